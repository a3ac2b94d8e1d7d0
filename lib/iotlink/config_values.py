# What config.json's keys default to, and the number rules that both its checks
# (config_once.py) and the loop (an interval_s set as a shared attribute) apply.

DEFAULTS = {"platform": "thingsboard", "interval_s": 10, "pins": {}, "backoff_max_s": 60,
            "queue_kb": 64}


def is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def positive_number(value):
    return (is_int(value) or isinstance(value, float)) and value > 0


def valid_wdt_ms(value):
    return is_int(value) and value >= 1000
