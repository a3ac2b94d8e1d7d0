# config.json at the board's root: load, check, save atomically. Error messages name the key
# and the expected type, never a value (the file holds the token and the Wi-Fi password).
import hashlib
import json

from iotlink import unload
from iotlink.config_values import DEFAULTS
from iotlink.errors import ConfigError  # also iotlink.config.ConfigError
from iotlink.files import read as read_file, write_atomic

PATH = "config.json"


def check(cfg):
    # Raise ConfigError for the first bad key; return the names of keys this firmware ignores.
    # The checks run once a boot: config_once.py is loaded for them and unloaded after them.
    from iotlink import config_once

    try:
        return config_once.check(cfg)
    finally:
        unload("config_once")


# The file that last passed check(): boot.py checks it, main.py then loads it again without
# loading the checks into a heap the whole loop now fills.
_checked = None


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


def read(path=PATH):
    # The raw JSON object of the file (no checks beyond JSON syntax).
    return _read(path)[1]


def load(path=PATH):
    # The checked config with defaults filled in; raises ConfigError naming the bad key.
    global _checked
    data, cfg = _read(path)
    # SHA-256, not hash(): a str's hash has 8 or 16 bits, so a changed file could match it.
    seen = (path, hashlib.sha256(data).digest())
    if seen != _checked:
        try:
            unknown = check(cfg)
        except ConfigError as e:
            raise ConfigError("%s: %s" % (path, e))
        for key in unknown:
            print("config: unknown key '%s' ignored" % key)
        _checked = seen
    for key in DEFAULTS:
        if key not in cfg:
            cfg[key] = DEFAULTS[key]
    return cfg


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
