"""JSON as ThingsBoard reads request bodies: Gson's JsonParser, which parses leniently.

So `{temperature:42}` (what a shell leaves of `-d '{"temperature":42}'` typed without its
quotes) is a valid body there. Lenient Gson also takes single-quoted strings, unquoted strings
(`{mode:eco}`), `=` or `=>` between name and value, `;` between members, `#`, `//` and `/* */`
comments, case-insensitive `true`/`false`/`null`, a `)]}'` first line, and in arrays an empty
element as null (`[1,,2]`, `[1,]`). Like Gson it refuses a trailing comma in an object, a
second top-level value, and nesting deeper than 255. An unquoted word that is not a JSON number
(`NaN`, `01`, `4x`) is a string, as Gson reads it. An empty body is None (Gson's JsonNull).

parse() raises ValueError with a message in Gson's words; it never raises anything else.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 255  # Gson's JsonReader nesting limit
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?")
_NOT_LITERAL = set("/\\;#={}[]:, \t\f\r\n")
_ESCAPES = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "\n": "\n",
            "'": "'", '"': '"', "\\": "\\", "/": "/"}
_KEYWORDS = {"true": True, "false": False, "null": None}


def parse(text: str) -> Any:
    """The value of a whole document; ValueError when Gson would refuse it too."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:  # too shallow to hit the nesting limit
        try:  # strict JSON, the usual case, at C speed (NaN and Infinity are words to Gson)
            return json.loads(text, parse_constant=str)
        except ValueError:
            pass
    return _Reader(text).document()


class _Reader:
    def __init__(self, text: str):
        self.text = text
        self.pos = 0

    def error(self, message: str) -> ValueError:
        line = self.text.count("\n", 0, self.pos) + 1
        column = self.pos - (self.text.rfind("\n", 0, self.pos) + 1) + 1
        return ValueError(f"{message} at line {line} column {column} path $")

    def document(self) -> Any:
        if self.text.startswith(")]}'\n"):
            self.pos = 5
        if self.next_token() is None:
            return None
        value = self.value(0)
        if self.next_token() is not None:
            raise self.error("Did not consume the entire document.")
        return value

    def next_token(self) -> str | None:
        """The next character that is not whitespace or comment (not consumed); None at the end."""
        text = self.text
        while self.pos < len(text):
            c = text[self.pos]
            if c in " \t\r\n":
                self.pos += 1
            elif c == "#" or text.startswith("//", self.pos):
                end = text.find("\n", self.pos)
                self.pos = len(text) if end < 0 else end + 1
            elif text.startswith("/*", self.pos):
                end = text.find("*/", self.pos + 2)
                if end < 0:
                    raise self.error("Unterminated comment")
                self.pos = end + 2
            else:
                return c
        return None

    def value(self, depth: int) -> Any:
        c = self.next_token()
        if c is None:
            raise self.error("End of input")
        if c in "{[":
            if depth >= MAX_DEPTH:
                raise self.error(f"Nesting limit {MAX_DEPTH} reached")
            self.pos += 1
            return self.object(depth + 1) if c == "{" else self.array(depth + 1)
        if c in "\"'":
            self.pos += 1
            return self.string(c)
        word = self.literal()
        if not word:
            raise self.error("Expected value")
        keyword = word.lower()
        if keyword in _KEYWORDS:
            return _KEYWORDS[keyword]
        if _NUMBER.fullmatch(word):
            return float(word) if any(ch in word for ch in ".eE") else int(word)
        return word

    def literal(self) -> str:
        start = self.pos
        while self.pos < len(self.text) and self.text[self.pos] not in _NOT_LITERAL:
            self.pos += 1
        return self.text[start:self.pos]

    def string(self, quote: str) -> str:
        out = []
        text = self.text
        while True:
            end = self.pos
            while end < len(text) and text[end] not in (quote, "\\"):
                end += 1
            out.append(text[self.pos:end])
            if end >= len(text):
                self.pos = end
                raise self.error("Unterminated string")
            self.pos = end + 1
            if text[end] == quote:
                return "".join(out)
            out.append(self.escape())

    def escape(self) -> str:
        if self.pos >= len(self.text):
            raise self.error("Unterminated escape sequence")
        c = self.text[self.pos]
        self.pos += 1
        if c == "u":
            digits = self.text[self.pos:self.pos + 4]
            if len(digits) < 4:
                raise self.error("Unterminated escape sequence")
            if not re.fullmatch(r"[0-9a-fA-F]{4}", digits):
                raise self.error("Malformed Unicode escape \\u" + digits)
            self.pos += 4
            return chr(int(digits, 16))
        if c not in _ESCAPES:
            raise self.error("Invalid escape sequence")
        return _ESCAPES[c]

    def name(self) -> str:
        c = self.next_token()
        if c in ("\"", "'"):
            self.pos += 1
            return self.string(c)
        word = self.literal()
        if not word:
            raise self.error("Expected name")
        return word

    def object(self, depth: int) -> dict:
        result: dict = {}
        if self.next_token() == "}":
            self.pos += 1
            return result
        while True:
            key = self.name()
            separator = self.next_token()
            if separator == ":":
                self.pos += 1
            elif separator == "=":
                self.pos += 1
                if self.text.startswith(">", self.pos):
                    self.pos += 1
            else:
                raise self.error("Expected ':'")
            result[key] = self.value(depth)
            c = self.next_token()
            self.pos += 1
            if c == "}":
                return result
            if c not in (",", ";"):
                self.pos -= 1
                raise self.error("Unterminated object")

    def array(self, depth: int) -> list:
        result: list = []
        if self.next_token() == "]":
            self.pos += 1
            return result
        while True:
            if self.next_token() in (",", ";", "]"):
                result.append(None)  # lenient: an empty element is null
            else:
                result.append(self.value(depth))
            c = self.next_token()
            self.pos += 1
            if c == "]":
                return result
            if c not in (",", ";"):
                self.pos -= 1
                raise self.error("Unterminated array")
