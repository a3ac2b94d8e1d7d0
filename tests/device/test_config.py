"""config.json on the board: checks that name the bad key, defaults, an atomic token save."""

import json

import pytest
from support import LOAD, RawServer, load

SECRETS = ("S3CRET-TOKEN", "WIFI-PASSWORD", "PROVISION-SECRET", "ACTIVATION-CODE",
           "12345678", "4711", "31415")  # numbers too: a password may be one

GOOD = {
    "platform": "thingsboard",
    "server": "https://thingsboard.cloud",
    "ca": "ca.der",
    "token": "S3CRET-TOKEN",
    "wifi": {"ssid": "lab", "password": "WIFI-PASSWORD"},
    "interval_s": 10,
    "pins": {"23": 23, "led": "LED"},
}

def with_(changes, drop=()):
    cfg = json.loads(json.dumps(GOOD))
    cfg.update(changes)
    for key in drop:
        cfg.pop(key)
    return cfg


def test_a_good_config_loads_with_defaults(mp):
    run = load(mp, {"server": "http://10.0.0.1:8080", "token": "T"})
    kind, cfg = run.result
    assert kind == "ok"
    assert cfg == {"server": "http://10.0.0.1:8080", "token": "T", "platform": "thingsboard",
                   "interval_s": 10, "pins": {}, "backoff_max_s": 60, "queue_kb": 64}
    kind, cfg = load(mp, GOOD).result
    assert kind == "ok" and cfg["pins"] == {"23": 23, "led": "LED"} and cfg["wifi"]["ssid"] == "lab"


def test_a_deep_sleep_section_loads_as_written(mp):
    sleep = {"mode": "deep", "send_every": 6, "queue_max": 50,
             "limits": {"temperature": [0, 40.5], "humidity": [None, 90], "door": [1, 1]}}
    kind, cfg = load(mp, with_({"sleep": sleep})).result
    assert kind == "ok" and cfg["sleep"] == sleep
    assert load(mp, with_({"sleep": {}})).result[0] == "ok"  # every key has a default: the always-on loop


def test_provisioning_and_activation_replace_the_token(mp):
    prov = with_({"provision": {"device_name": "pump-17", "key": "K", "secret": "PROVISION-SECRET"}},
                 drop=["token"])
    assert load(mp, prov).result[0] == "ok"
    tt = with_({"platform": "thethings", "activation_code": "ACTIVATION-CODE"}, drop=["token"])
    assert load(mp, tt).result[0] == "ok"


@pytest.mark.parametrize("cfg,says", [
    (None, "config.json not found"),
    ('{"server": "http://x", ', "config.json is not valid JSON"),
    ([1, 2], "must hold a JSON object"),
    (with_({"platform": "aws"}), "'platform' must be one of thingsboard, thethings"),
    (with_({}, drop=["server"]), "'server' is missing"),
    (with_({"server": 8080}), "'server' must be a non-empty string (got 8080)"),
    (with_({"server": "ftp://files"}), "'server' must start with http:// or https://"),
    (with_({"token": ""}), "'token' must be a non-empty string (got an empty string)"),
    (with_({"token": "S3CRET-TOKEN/x"}), "'token' may hold only letters, digits and - _ . ~"),
    (with_({"token": 12345678}), "'token' must be a non-empty string (got a number)"),
    (with_({}, drop=["token"]), "no 'token': give the device's access token or a 'provision' block"),
    (with_({"platform": "thethings"}, drop=["token"]), "no 'token': give the thing token or an 'activation_code'"),
    (with_({"wifi": "lab"}), "'wifi' must be an object (got a string)"),
    (with_({"wifi": {"password": "WIFI-PASSWORD"}}), "'wifi.ssid' is missing"),
    (with_({"wifi": {"ssid": "lab", "password": 12345678}}), "'wifi.password' must be a string (got a number)"),
    (with_({"wifi": {"ssid": "lab", "pass": "WIFI-PASSWORD"}}), "'wifi.pass' is not a known key"),
    (with_({"provision": {"key": "K"}}, drop=["token"]), "'provision.secret' is missing"),
    (with_({"provision": {"key": "K", "secret": ["PROVISION-SECRET"]}}), "'provision.secret' must be a non-empty string (got list)"),
    (with_({"activation_code": 5}), "'activation_code' must be a non-empty string (got a number)"),
    (with_({"provision": {"key": 4711, "secret": "PROVISION-SECRET"}}),
     "'provision.key' must be a non-empty string (got a number)"),
    (with_({"provision": {"key": "K", "secret": 31415.9}}),
     "'provision.secret' must be a non-empty string (got a number)"),
    (with_({"interval_s": "10"}), "'interval_s' must be a positive number of seconds (got a string)"),
    (with_({"interval_s": 0}), "'interval_s' must be a positive number of seconds (got 0)"),
    (with_({"interval_s": -5}), "'interval_s' must be a positive number of seconds (got -5)"),
    (with_({"interval_s": True}), "'interval_s' must be a positive number of seconds (got true)"),
    (with_({"backoff_max_s": None}), "'backoff_max_s' must be a positive number of seconds (got null)"),
    (with_({"pins": ["23"]}), "'pins' must be an object of name: pin id (got list)"),
    (with_({"pins": {"23": 23, "led": 1.5}}), "pins['led'] must be a pin number (int >= 0) or a pin name"),
    (with_({"pins": {"x": -1}}), "pins['x'] must be a pin number (int >= 0) or a pin name like \"LED\" (got -1)"),
    (with_({"pins": {"x": ""}}), "pins['x'] must be a pin number"),
    (with_({"pins": {"x": True}}), "pins['x'] must be a pin number"),
    (with_({"wdt_ms": 500}), "'wdt_ms' must be an integer >= 1000 (got 500)"),
    (with_({"wdt_ms": 5000.0}), "'wdt_ms' must be an integer >= 1000 (got 5000.0)"),
    (with_({"queue_kb": 2}), "'queue_kb' must be an integer >= 8 (got 2)"),
    (with_({"sleep": "deep"}), "'sleep' must be an object (got a string)"),
    (with_({"sleep": {"mode": "hibernate"}}), "'sleep.mode' must be one of light, deep (got a string)"),
    (with_({"sleep": {"mode": "deep", "every": 6}}), "'sleep.every' is not a known key"),
    (with_({"sleep": {"send_every": 0}}), "'sleep.send_every' must be an integer >= 1 (got 0)"),
    (with_({"sleep": {"queue_max": 2.5}}), "'sleep.queue_max' must be an integer >= 1 (got 2.5)"),
    (with_({"sleep": {"limits": [0, 40]}}), "'sleep.limits' must be an object of name: [low, high] (got list)"),
    (with_({"sleep": {"limits": {"temperature": [40, 0]}}}), "'sleep.limits.temperature' must be [low, high]"),
    (with_({"sleep": {"limits": {"temperature": [0]}}}), "'sleep.limits.temperature' must be [low, high]"),
    (with_({"sleep": {"limits": {"temperature": ["0", 40]}}}), "'sleep.limits.temperature' must be [low, high]"),
])
def test_a_bad_config_is_refused_with_a_message_naming_the_key(mp, cfg, says):
    if cfg is None:
        run = mp(LOAD)
    else:
        run = load(mp, cfg)
    kind, message = run.result
    assert kind == "error"
    assert message.startswith("config.json")
    assert says in message
    for secret in SECRETS:
        assert secret not in run.stdout


def test_unknown_keys_are_reported_and_ignored(mp):
    run = load(mp, with_({"intervall_s": 5}))
    assert run.result[0] == "ok"
    assert "config: unknown key 'intervall_s' ignored" in run.stdout


def test_a_file_is_checked_once_a_boot_and_again_when_it_changes(mp):
    # boot.py loads config.json, then main.py: the second load must not run the checks (nor
    # report the unknown keys) again, but a changed file is checked again.
    (mp.flash / "config.json").write_text(json.dumps(with_({"intervall_s": 5})))
    run = mp("""
from iotlink import config
from iotlink.errors import ConfigError
config.load()
import iotlink.config_values as values
checks = []
real = values.positive_number  # the checks call it (interval_s); the loaded config does not
def counting(value):
    checks.append(value)
    return real(value)
values.positive_number = counting
second = config.load()
with open("config.json", "w") as f:
    f.write('{"server": "http://h", "token": "T", "interval_s": -1}')
try:
    config.load()
    third = "ok"
except ConfigError as e:
    third = str(e)
out([checks, second["interval_s"], third])
""")
    checks, interval, third = run.result
    assert checks == [-1]  # only for the changed file
    assert interval == 10
    assert third.startswith("config.json") and "interval_s" in third
    assert run.stdout.count("unknown key 'intervall_s'") == 1


def test_a_changed_file_is_checked_again_even_when_its_str_hash_is_the_same(mp):
    # Same length, same 16-bit str hash(): only the changed file has a bad interval_s.
    checked = '{"server": "http://h", "token": "T0000", "interval_s": 10}'
    changed = '{"server": "http://h", "token": "Tat8p", "interval_s": -1}'
    assert len(changed) == len(checked)  # the old cache key held the length too
    (mp.flash / "config.json").write_text(checked)
    run = mp("""
from iotlink import config
from iotlink.errors import ConfigError
config.load()
changed = %r
with open("config.json", "w") as f:
    f.write(changed)
try:
    config.load()
    outcome = "ok"
except ConfigError as e:
    outcome = str(e)
out([hash(changed) == hash(%r), outcome])
""" % (changed, checked))
    same_hash, outcome = run.result
    assert same_hash  # else this port's hash() changed and the test no longer covers a collision
    assert outcome.startswith("config.json") and "interval_s" in outcome


def test_save_token_replaces_the_file_atomically_and_keeps_every_other_key(mp):
    cfg = with_({"provision": {"device_name": "pump-17", "key": "K", "secret": "PROVISION-SECRET"},
                 "custom": {"kept": [1, 2]}}, drop=["token"])
    (mp.flash / "config.json").write_text(json.dumps(cfg, indent=2))
    mp("""
from iotlink import config, config_once
config_once.save_token("NEW-TOKEN", "config.json")
out(config.load()["token"])
""")
    saved = json.loads((mp.flash / "config.json").read_text())
    assert saved == {**cfg, "token": "NEW-TOKEN"}
    assert sorted(p.name for p in mp.flash.iterdir() if p.name.startswith("config")) == ["config.json"]


def test_a_save_that_fails_midway_leaves_the_old_file_whole(mp):
    (mp.flash / "config.json").write_text(json.dumps(GOOD))
    (mp.flash / "config.json.tmp").mkdir()  # the temporary file cannot be written
    run = mp("""
from iotlink import config, config_once
try:
    config_once.save_token("NEW-TOKEN", "config.json")
except OSError as e:
    out("OSError")
out(config.load()["token"])
""")
    assert run.results == ["OSError", "S3CRET-TOKEN"]
    assert json.loads((mp.flash / "config.json").read_text()) == GOOD


def test_a_torn_temporary_file_from_a_power_cut_does_not_matter(mp):
    (mp.flash / "config.json").write_text(json.dumps(GOOD))
    (mp.flash / "config.json.tmp").write_text('{"server": "http://half')
    assert load(mp, GOOD).result == ["ok", {**GOOD, "backoff_max_s": 60, "queue_kb": 64}]
    mp('from iotlink import config_once\nconfig_once.save_token("T2", "config.json")')
    assert json.loads((mp.flash / "config.json").read_text())["token"] == "T2"
    assert not (mp.flash / "config.json.tmp").exists()


# ---- a token from the server is saved only if config.json will load with it -------------------

OBTAIN = """
from iotlink import config, token_once
from iotlink.errors import ProvisionError
cfg = config.load()
try:
    token_once.obtain(cfg, "config.json", 3)
    out(["ok", config.load()["token"]])
except ProvisionError as e:
    out(["ProvisionError", str(e)])
"""


def obtain(mp, platform, token):
    if platform == "thingsboard":
        cfg = {"server": None, "provision": {"key": "K", "secret": "PROVISION-SECRET"}}
        reply = {"status": "SUCCESS", "credentialsType": "ACCESS_TOKEN", "credentialsValue": token}
    else:
        cfg = {"platform": "thethings", "server": None, "activation_code": "ACTIVATION-CODE"}
        reply = {"status": "created", "thingToken": token}
    body = json.dumps(reply).encode()
    raw = RawServer(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
    try:
        cfg["server"] = raw.url
        (mp.flash / "config.json").write_text(json.dumps(cfg))
        return mp(OBTAIN), cfg
    finally:
        raw.stop()


@pytest.mark.parametrize("platform", ["thingsboard", "thethings"])
@pytest.mark.parametrize("token, why", [
    (12345, "(got a number)"),  # thethings.iO's activation refuses it itself: "no thing token"
    ("a b", "'token' may hold only letters, digits and"),
    ("a/b", "'token' may hold only letters, digits and"),
    ("ab\r\ncd", "'token' may hold only letters, digits and"),
    ("caf\u00e9", "'token' may hold only letters, digits and"),
    ("a" * 129, "'token' must be at most 128 characters long"),
])
def test_an_odd_token_from_the_server_is_refused_not_saved(mp, platform, token, why):
    run, cfg = obtain(mp, platform, token)
    kind, message = run.result
    if platform == "thethings" and not isinstance(token, str):
        why = "no thing token in the reply"
    assert kind == "ProvisionError" and why in message, message
    assert json.loads((mp.flash / "config.json").read_text()) == cfg  # untouched: it still loads
    if isinstance(token, str) and len(token) > 1:
        assert token not in run.stdout


@pytest.mark.parametrize("platform", ["thingsboard", "thethings"])
@pytest.mark.parametrize("token", ["A1b2C3d4E5f6G7h8I9j0", "TEST_TOKEN", "x-y.z~1", "k" * 128])
def test_tokens_as_the_servers_make_them_are_saved(mp, platform, token):
    run, _ = obtain(mp, platform, token)
    assert run.result == ["ok", token]


def test_an_empty_token_from_the_server_is_refused(mp):
    # (ThingsBoard's reply without a token is refused too, then the token the board chose is
    # tried: the one an earlier try may have created the device with.)
    run, cfg = obtain(mp, "thethings", "")
    assert run.result == ["ProvisionError", "error no thing token in the reply"]
    assert json.loads((mp.flash / "config.json").read_text()) == cfg
