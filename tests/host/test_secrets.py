"""Secrets on the host: masked wherever they are shown (numbers too), files holding them readable
by their owner only."""

import json
import os

from iotlink_tools.secret import masked, read_first_line, redact, write_private
from iotlink_tools.vboard import prepare_flash

CONFIG = {"token": "t0k3n-value", "activation_code": 4242424242, "interval_s": 3,
          "wifi": {"ssid": "lab", "password": 12345678},
          "provision": {"device_name": "n", "key": "KEY-1", "secret": "S3cret!"},
          "pins": {"token": 5}}


def test_masked_hides_every_secret_key_whatever_its_type():
    assert masked(CONFIG) == {"token": "***", "activation_code": "***", "interval_s": 3,
                              "wifi": {"ssid": "lab", "password": "***"},
                              "provision": {"device_name": "n", "key": "***", "secret": "***"},
                              "pins": {"token": "***"}}


def test_redact_removes_secret_values_from_text_numbers_included():
    text = "'wifi.password' must be a string (got 12345678); token t0k3n-value; 4242424242; S3cret!"
    assert redact(text, CONFIG) == "'wifi.password' must be a string (got ***); token ***; ***; ***"
    # A short value is a whole word only: a PIN 5 must not eat every 5 of the message.
    assert redact("pin 5 at line 15", {"token": 5}) == "pin *** at line 15"


def test_files_with_secrets_are_for_their_owner_only(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    os.chmod(path, 0o644)
    write_private(path, "new\n")
    assert path.read_text() == "new\n" and path.stat().st_mode & 0o777 == 0o600
    flash = prepare_flash(tmp_path / "board", {"token": "T"})
    assert json.loads((flash / "config.json").read_text()) == {"token": "T"}
    assert (flash / "config.json").stat().st_mode & 0o777 == 0o600


def test_a_secret_file_gives_its_first_line(tmp_path):
    path = tmp_path / "pw"
    path.write_text("p@ss word\r\nnext\n")
    assert read_first_line(path) == "p@ss word"
