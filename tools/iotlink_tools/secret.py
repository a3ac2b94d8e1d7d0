"""Secrets on the host: read from a file, written only for the user, never shown.

A secret given on the command line is visible to every user of the machine (ps, /proc) and
stays in shell histories: every command also takes it from an environment variable or a file.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

# Keys whose values are secrets wherever they sit in a config, whatever their type.
SECRET_KEYS = ("password", "token", "secret", "key", "activation_code")
MASK = "***"
SHORT = 5  # characters: shorter secret values are masked as whole words only


def read_first_line(path: Path) -> str:
    """The first line of a file (a password file, as --password-file reads it)."""
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\r\n")


def write_private(path: Path, text: str) -> None:
    """Write a file that holds secrets: readable by its owner only (mode 0600), also when it existed."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # an older file kept its mode through O_CREAT
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def secret_values(config) -> list[str]:
    """Every value under a secret key of a config (nested too), as text, longest first."""
    found = []
    if isinstance(config, dict):
        for name, value in config.items():
            if name in SECRET_KEYS and not isinstance(value, (dict, list)):
                found.append(value if isinstance(value, str) else json.dumps(value))
            else:
                found += secret_values(value)
    elif isinstance(config, list):
        for value in config:
            found += secret_values(value)
    return sorted({v for v in found if v}, key=len, reverse=True)


def masked(config):
    """The config with the value of every secret key replaced by ***, for showing."""
    if isinstance(config, dict):
        return {name: MASK if name in SECRET_KEYS and not isinstance(value, (dict, list)) else masked(value)
                for name, value in config.items()}
    if isinstance(config, list):
        return [masked(value) for value in config]
    return config


def redact(text: str, config) -> str:
    """text with every secret value of config replaced by ***; a value of a few characters only
    where it stands alone (a PIN of 1234 must not mangle every "1" of the text)."""
    for value in secret_values(config):
        if len(value) >= SHORT:
            text = text.replace(value, MASK)
        else:
            text = re.sub(rf"(?<!\w){re.escape(value)}(?!\w)", MASK, text)
    return text
