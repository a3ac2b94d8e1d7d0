# config.json at the board's root: where it is, load() (called by boot.py, which no update
# replaces, and at start-up) and the CA file of verified TLS. Reading, checking and saving the
# file is config_once.py's work: only the start-up and a token's save need it.
from iotlink import unload
from iotlink.errors import ConfigError

PATH = "config.json"

# The file that last passed the checks: boot.py loads it, then main.py loads it again without
# checking it, or reporting its unknown keys, a second time.
_checked = None


def load(path=PATH):
    # The checked config with defaults filled in; raises ConfigError naming the bad key.
    global _checked
    from iotlink import config_once

    try:
        cfg, _checked = config_once.load(path, _checked)
    finally:
        unload("config_once")
    return cfg


def ca_data(cfg):
    # The CA certificate bytes for verified TLS, or None (plain http, or verification waived).
    if "ca" not in cfg or not cfg["server"].startswith("https://"):
        return None
    try:
        with open(cfg["ca"], "rb") as f:
            return f.read()
    except OSError:
        raise ConfigError("'ca': file %s not found on the board" % cfg["ca"])
