# config.json at the board's root: load, check, save atomically. Error messages name the key
# and the expected type, never a value (the file holds the token and the Wi-Fi password).
import json

from iotlink.errors import IotlinkError

PATH = "config.json"
PLATFORMS = ("thingsboard", "thethings")
KNOWN = ("platform", "server", "token", "wifi", "provision", "activation_code", "interval_s",
         "pins", "wdt_ms", "backoff_max_s", "queue_kb", "ca", "tls_insecure")
DEFAULTS = {"platform": "thingsboard", "interval_s": 10, "pins": {}, "backoff_max_s": 60,
            "queue_kb": 64}


class ConfigError(IotlinkError):
    pass


def _got(value):
    # Numbers are shown, strings only by type: a string may be a secret.
    if value is None or isinstance(value, (bool, int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return "a string" if value else "an empty string"
    return type(value).__name__


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def positive_number(value):
    return (_is_int(value) or isinstance(value, float)) and value > 0


def valid_wdt_ms(value):
    return _is_int(value) and value >= 1000


def _text(cfg, key, where=""):
    value = cfg[key]
    if not isinstance(value, str) or not value:
        raise ConfigError("'%s%s' must be a non-empty string (got %s)" % (where, key, _got(value)))


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
            raise ConfigError("'%spassword' must be a string (got %s)" % (where, _got(section[name])))


def _pins(pins):
    if not isinstance(pins, dict):
        raise ConfigError("'pins' must be an object of name: pin id (got %s)" % _got(pins))
    for name in pins:
        pin_id = pins[name]
        if not ((_is_int(pin_id) and pin_id >= 0) or (isinstance(pin_id, str) and pin_id)):
            raise ConfigError(
                "pins['%s'] must be a pin number (int >= 0) or a pin name like \"LED\" (got %s)"
                % (name, _got(pin_id))
            )


def check(cfg):
    # Raise ConfigError for the first bad key; return the names of keys this firmware ignores.
    if not isinstance(cfg, dict):
        raise ConfigError("the file must hold a JSON object (got %s)" % _got(cfg))
    platform = cfg.get("platform", DEFAULTS["platform"])
    if platform not in PLATFORMS:
        raise ConfigError("'platform' must be one of %s (got %r)" % (", ".join(PLATFORMS), platform))
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
        _text(cfg, "token")
        for c in "/?#% ":
            if c in cfg["token"]:
                raise ConfigError("'token' must not contain '/', '?', '#', '%' or spaces")
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
    if "queue_kb" in cfg and not (_is_int(cfg["queue_kb"]) and cfg["queue_kb"] >= 8):
        raise ConfigError("'queue_kb' must be an integer >= 8 (got %s)" % _got(cfg["queue_kb"]))
    if "pins" in cfg:
        _pins(cfg["pins"])
    return [k for k in cfg if k not in KNOWN]


def read(path=PATH):
    # The raw JSON object of the file (no checks beyond JSON syntax).
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        raise ConfigError("%s not found" % path)
    try:
        return json.loads(text)
    except ValueError:
        raise ConfigError("%s is not valid JSON" % path)


def load(path=PATH):
    # The checked config with defaults filled in; raises ConfigError naming the bad key.
    cfg = read(path)
    try:
        unknown = check(cfg)
    except ConfigError as e:
        raise ConfigError("%s: %s" % (path, e))
    for key in unknown:
        print("config: unknown key '%s' ignored" % key)
    for key in DEFAULTS:
        if key not in cfg:
            cfg[key] = DEFAULTS[key]
    return cfg


def write_atomic(path, data):
    # A power cut leaves the old file or the new one, never half of it: write a temporary file,
    # then rename it over the old one (littlefs and the unix port replace the target in one step).
    import os

    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.rename(tmp, path)
    except OSError:
        # FAT cannot rename onto an existing file: the one non-atomic step left.
        os.remove(path)
        os.rename(tmp, path)
    if hasattr(os, "sync"):
        os.sync()


def save_token(token, path=PATH):
    # Store a token obtained by provisioning, keeping the rest of the file exactly as it was.
    cfg = read(path)
    cfg["token"] = token
    write_atomic(path, json.dumps(cfg).encode())


def ca_data(cfg):
    # The CA certificate bytes for verified TLS, or None (plain http, or verification waived).
    if "ca" not in cfg or not cfg["server"].startswith("https://"):
        return None
    try:
        with open(cfg["ca"], "rb") as f:
            return f.read()
    except OSError:
        raise ConfigError("'ca': file %s not found on the board" % cfg["ca"])
