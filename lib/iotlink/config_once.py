# config.json (config.py): read, checked, saved. Each error names the key and the expected type,
# and never the value of a secret. Only the start-up and a token's save need this: config.load
# loads this module for its call, and the start-up and provisioning code for theirs.
import hashlib
import json

from micropython import const

from iotlink.config_values import DEFAULTS, is_int, positive_number, valid_wdt_ms
from iotlink.errors import ConfigError
from iotlink.files import read as read_file, write_atomic

_PLATFORMS = const(("thingsboard", "thethings"))
_KNOWN = const(("platform", "server", "token", "wifi", "provision", "activation_code", "interval_s",
                 "pins", "wdt_ms", "backoff_max_s", "queue_kb", "ca", "tls_insecure", "sleep"))
# The "sleep" section: its defaults are app_sleep.py's, which alone uses them (deep mode), so
# the always-on loop keeps no copy in RAM.
_SLEEP_KEYS = const(("mode", "send_every", "queue_max", "limits"))
_SLEEP_MODES = const(("light", "deep"))
_SECRET = const(("password", "token", "secret", "key", "activation_code"))  # values never shown
_MAX_TOKEN = const(128)
# A token goes into the request path: letters, digits and the characters a path segment takes
# as they are (RFC 3986), but ";" (it starts path parameters) and "%" (an escape).
_TOKEN_CHARS = const(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.~!$&'()*+,=:@")


def _got(value, key=None):
    # Numbers are shown, strings only by type (a string may be a secret), a secret only by type.
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return "a number" if key in _SECRET else json.dumps(value)
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    return type(value).__name__


def _text(cfg, key, where=""):
    value = cfg[key]
    if not isinstance(value, str) or not value:
        raise ConfigError("'%s%s' must be a non-empty string (got %s)" % (where, key, _got(value, key)))


def token_problem(token):
    # Why this access token cannot go into a request path, or None (never the token itself).
    if not isinstance(token, str) or not token:
        return "must be a non-empty string (got %s)" % _got(token, "token")
    if len(token) > _MAX_TOKEN:
        return "must be at most %d characters long" % _MAX_TOKEN
    for c in token.encode():
        if c not in _TOKEN_CHARS:
            return "may hold only letters, digits and - _ . ~ ! $ & ' ( ) * + , = : @"
    return None


def _section(cfg, key, required, optional=()):
    section = cfg[key]
    if not isinstance(section, dict):
        raise ConfigError("'%s' must be an object (got %s)" % (key, _got(section)))
    where = key + "."
    for name in required:
        if name not in section:
            raise ConfigError("'%s%s' is missing" % (where, name))
    for name in section:
        if name not in required and name not in optional:
            raise ConfigError("'%s%s' is not a known key" % (where, name))
        if name != "password":  # an open network may have an empty password
            _text(section, name, where)
        elif not isinstance(section[name], str):
            raise ConfigError("'%spassword' must be a string (got %s)" % (where, _got(section[name], name)))


def _pins(pins):
    if not isinstance(pins, dict):
        raise ConfigError("'pins' must be an object of name: pin id (got %s)" % _got(pins))
    for name in pins:
        pin_id = pins[name]
        if not ((is_int(pin_id) and pin_id >= 0) or (isinstance(pin_id, str) and pin_id)):
            raise ConfigError(
                "pins['%s'] must be a pin number (int >= 0) or a pin name like \"LED\" (got %s)"
                % (name, _got(pin_id))
            )


def _number(value):
    return is_int(value) or isinstance(value, float)


def _sleep(sleep):
    if not isinstance(sleep, dict):
        raise ConfigError("'sleep' must be an object (got %s)" % _got(sleep))
    for name in sleep:
        if name not in _SLEEP_KEYS:
            raise ConfigError("'sleep.%s' is not a known key" % name)
    mode = sleep.get("mode", "light")
    if mode not in _SLEEP_MODES:
        raise ConfigError("'sleep.mode' must be one of %s (got %s)" % (", ".join(_SLEEP_MODES), _got(mode)))
    for name in ("send_every", "queue_max"):
        if name in sleep and not (is_int(sleep[name]) and sleep[name] >= 1):
            raise ConfigError("'sleep.%s' must be an integer >= 1 (got %s)" % (name, _got(sleep[name])))
    limits = sleep.get("limits", {})
    if not isinstance(limits, dict):
        raise ConfigError("'sleep.limits' must be an object of name: [low, high] (got %s)" % _got(limits))
    for name in limits:
        pair = limits[name]
        if not (isinstance(pair, list) and len(pair) == 2 and all(v is None or _number(v) for v in pair)
                and (None in pair or pair[0] <= pair[1])):
            raise ConfigError("'sleep.limits.%s' must be [low, high]: numbers with low <= high, null for "
                              "no bound (got %s)" % (name, _got(pair)))


def check(cfg):
    # Raise ConfigError for the first bad key; return the names of keys this firmware ignores.
    if not isinstance(cfg, dict):
        raise ConfigError("the file must hold a JSON object (got %s)" % _got(cfg))
    platform = cfg.get("platform", DEFAULTS["platform"])
    if platform not in _PLATFORMS:
        raise ConfigError("'platform' must be one of %s (got %r)" % (", ".join(_PLATFORMS), platform))
    if "server" not in cfg:
        raise ConfigError("'server' is missing (e.g. \"https://thingsboard.cloud\")")
    _text(cfg, "server")
    if not (cfg["server"].startswith("http://") or cfg["server"].startswith("https://")):
        raise ConfigError("'server' must start with http:// or https://")
    # https verifies the server by default: a CA certificate file, or an explicit opt-out.
    if "ca" in cfg:
        _text(cfg, "ca")
    if "tls_insecure" in cfg and not isinstance(cfg["tls_insecure"], bool):
        raise ConfigError("'tls_insecure' must be true or false (got %s)" % _got(cfg["tls_insecure"]))
    if cfg["server"].startswith("https://") and "ca" not in cfg and not cfg.get("tls_insecure"):
        raise ConfigError(
            "an https 'server' needs 'ca' (the CA certificate file on the board, PEM or DER) "
            "or \"tls_insecure\": true to skip verifying the server"
        )
    if "token" in cfg:
        problem = token_problem(cfg["token"])
        if problem:
            raise ConfigError("'token' " + problem)
    if "wifi" in cfg:
        _section(cfg, "wifi", ("ssid",), ("password", "country", "hostname"))
    if "provision" in cfg:
        _section(cfg, "provision", ("key", "secret"), ("device_name",))
    if "activation_code" in cfg:
        _text(cfg, "activation_code")
    if "token" not in cfg:
        if platform == "thingsboard" and "provision" not in cfg:
            raise ConfigError("no 'token': give the device's access token or a 'provision' block")
        if platform == "thethings" and "activation_code" not in cfg:
            raise ConfigError("no 'token': give the thing token or an 'activation_code'")
    for key in ("interval_s", "backoff_max_s"):
        if key in cfg and not positive_number(cfg[key]):
            raise ConfigError("'%s' must be a positive number of seconds (got %s)" % (key, _got(cfg[key])))
    if "wdt_ms" in cfg and not valid_wdt_ms(cfg["wdt_ms"]):
        raise ConfigError("'wdt_ms' must be an integer >= 1000 (got %s)" % _got(cfg["wdt_ms"]))
    if "queue_kb" in cfg and not (is_int(cfg["queue_kb"]) and cfg["queue_kb"] >= 8):
        raise ConfigError("'queue_kb' must be an integer >= 8 (got %s)" % _got(cfg["queue_kb"]))
    if "pins" in cfg:
        _pins(cfg["pins"])
    if "sleep" in cfg:
        _sleep(cfg["sleep"])
    return [k for k in cfg if k not in _KNOWN]


# ---- the file -------------------------------------------------------------------------------
def _read(path):
    # (the file's bytes, its JSON object); no checks beyond JSON syntax.
    try:
        data = read_file(path)
    except OSError:
        raise ConfigError("%s not found" % path)
    try:
        return data, json.loads(data)
    except ValueError:
        raise ConfigError("%s is not valid JSON" % path)


def read(path):
    # The raw JSON object of the file (no checks beyond JSON syntax).
    return _read(path)[1]


def load(path, checked=None):
    # (the checked config with defaults filled in, the file's fingerprint); raises ConfigError
    # naming the bad key. A file whose fingerprint is `checked` passed the checks before: they
    # do not run, nor report its unknown keys, again.
    data, cfg = _read(path)
    # SHA-256, not hash(): a str's hash has 8 or 16 bits, so a changed file could match it.
    seen = (path, hashlib.sha256(data).digest())
    if seen != checked:
        try:
            unknown = check(cfg)
        except ConfigError as e:
            raise ConfigError("%s: %s" % (path, e))
        for key in unknown:
            print("config: unknown key '%s' ignored" % key)
    for key in DEFAULTS:
        if key not in cfg:
            cfg[key] = DEFAULTS[key]
    return cfg, seen


def save_token(token, path):
    # Store a token obtained by provisioning, keeping the rest of the file exactly as it was.
    cfg = read(path)
    cfg["token"] = token
    write_atomic(path, json.dumps(cfg).encode())
