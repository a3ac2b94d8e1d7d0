# config.json at the board's root. Its reading, checks and saving are config_once.py's: only the
# start-up and a token's save use them, never the running loop. load() stays here, as the one
# entry that boot.py (which no update replaces) and the start-up call.
from iotlink import unload

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
