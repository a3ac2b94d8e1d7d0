"""The manual: every link in README.md and docs/ leads to a file (and heading) in the repository,
nothing links outside it, the front page stays short, and every config shown passes the
firmware's own checks in MicroPython."""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from support import REPO, load


PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), REPO / "examples" / "README.md"]
# Pages that other parts of the project write; a link to one is checked once it exists.
# The only hosts a URL in a code block may name: example servers and the platforms' own.
SERVER_HOSTS = {"127.0.0.1", "localhost", "192.168.1.10", "tb.example.com", "thingsboard.cloud",
                "api.thethings.io"}
WORDS_NOT_FOR_USERS = ("session", "issue #", "engineer")
README_LIMIT = 15 * 1000  # bytes

FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1[ \t]*$", re.S | re.M)
CODE_SPAN = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*(\S+)", re.M)
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*\b(?:href|src)=[\"']([^\"']+)", re.I)
URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s)\"'`<>,]+", re.I)
JSON_BLOCK = re.compile(r"^[ \t]*```json[ \t]*\n(.*?)^[ \t]*```[ \t]*$", re.S | re.M)


def page_id(page: Path) -> str:
    return page.relative_to(REPO).as_posix()


def prose(text: str) -> str:
    """The text without code blocks and code spans (where links are not links)."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def code(text: str) -> str:
    return "\n".join([m.group(0) for m in FENCE.finditer(text)] + CODE_SPAN.findall(FENCE.sub("", text)))


def slug(heading: str) -> str:
    """The anchor a Markdown renderer gives a heading (GitHub's rule)."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found, seen = set(), {}
    for line in FENCE.sub("", page.read_text()).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(page: Path) -> list[str]:
    text = prose(page.read_text())
    return LINK.findall(text) + REFERENCE.findall(text) + HTML_LINK.findall(text)


def test_the_pages_are_there():
    names = {page_id(p) for p in PAGES}
    assert {"README.md", "docs/README.md", "docs/configuration.md", "docs/first-board.md",
            "docs/thingsboard-cloud.md", "docs/troubleshooting.md", "docs/performance.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_link_leads_to_a_file_and_heading_below_the_page(page):
    problems = []
    for target in links(page):
        if urlsplit(target).scheme or target.startswith("//"):
            problems.append(f"{target}: links outside the repository")
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(page.parent):
            # A page may be read on its own folder's terms (docs/ alone): it links down, never up.
            problems.append(f"{target}: outside the page's folder")
        elif not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and anchor not in anchors(dest):
            problems.append(f"{target}: no heading with that anchor in {page_id(dest)}")
    assert not problems, f"{page_id(page)}:\n" + "\n".join(problems)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_urls_appear_only_as_example_servers_in_code(page):
    text = page.read_text()
    assert not URL.findall(prose(text)), "a URL outside a code block"
    hosts = {urlsplit(url).hostname for url in URL.findall(code(text))}
    assert hosts <= SERVER_HOSTS, f"URLs in code name other hosts: {hosts - SERVER_HOSTS}"


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_the_pages_speak_to_users_not_about_how_the_project_was_made(page):
    text = page.read_text().lower()
    assert not [w for w in WORDS_NOT_FOR_USERS if w in text]


def test_the_front_page_is_short():
    assert len((REPO / "README.md").read_bytes()) < README_LIMIT


def config_blocks() -> list[tuple[str, str]]:
    return [(f"{page_id(p)}:{i}", block) for p in PAGES
            for i, block in enumerate(JSON_BLOCK.findall(p.read_text()), 1)]


def test_the_manual_shows_configs():
    assert len(config_blocks()) >= 10


@pytest.mark.parametrize("where,block", config_blocks(), ids=[w for w, _ in config_blocks()])
def test_every_config_in_the_manual_passes_the_firmware_checks(mp, where, block):
    shown = json.loads(block)
    # A block without a server shows some keys only: they go into the smallest config.
    cfg = shown if "server" in shown else {"server": "http://192.168.1.10:8080", "token": "T", **shown}
    run = load(mp, cfg)
    kind, loaded = run.result
    assert kind == "ok", loaded
    assert "unknown key" not in run.stdout
    assert loaded == {**loaded, **cfg}
