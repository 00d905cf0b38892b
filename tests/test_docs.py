"""The docs a newcomer reads hold: every relative link of the README and docs/ leads to a file, and every option quoted
in a `segcheck` or `pytest` command there is one those commands take (their --help lists it)."""

import contextlib
import io
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
COMMAND = re.compile(r"(?:^|`|\$ )((?:segcheck|pytest)\b[^`\n]*)")
OPTION = re.compile(r"(?<![\w-])(--[a-z][a-z0-9-]*)")


@cache
def help_text(*command) -> str:
    """What `command --help` prints: pytest's in a process of its own, where its plugins load as a user's would;
    segcheck's from its own parsers here (the same text as `python -m segcheck.cli.commands ... --help`, without a
    Python start and MXNet's import per subcommand)."""
    if command[0] == "pytest":
        done = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
        return done.stdout + done.stderr
    from segcheck.cli import commands

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), pytest.raises(SystemExit):
        commands.main([*command[1:], "--help"])
    return out.getvalue()


def _help_of(command: str) -> str:
    words = command.split()
    if words[0] == "pytest":
        return help_text("pytest")
    from segcheck.cli.commands import SUBCOMMANDS

    sub = words[1] if len(words) > 1 and words[1] in SUBCOMMANDS else None
    if sub is None:
        return help_text("segcheck")
    nested = words[2] if len(words) > 2 and re.fullmatch(r"[a-z]+", words[2]) else None  # segcheck fetch voc ...
    return help_text("segcheck", sub) + (help_text("segcheck", sub, nested) if nested else "")


def _commands(page: Path) -> list:
    """(line number, command) of each `segcheck ...` or `pytest ...` command quoted on the page, continuation lines joined."""
    found, text = [], page.read_text().replace("\\\n", " ")
    for number, line in enumerate(text.splitlines(), 1):
        found += [(number, m.group(1).strip()) for m in COMMAND.finditer(line)]
    return found


def _relative_links(page: Path) -> list:
    """The links of the page to files (not to a URL or to an anchor of the page itself)."""
    return [t for t in LINK.findall(page.read_text()) if not (re.match(r"[a-z]+:", t) or t.startswith("#"))]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in _relative_links(page):
        if not (page.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{page.relative_to(ROOT)}: links to nothing: {broken}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_quoted_option_is_taken_by_its_command(page):
    unknown = []
    for number, command in _commands(page):
        listed = _help_of(command)
        unknown += [f"line {number}: {option} ({command[:60]})" for option in OPTION.findall(command)
                    if option not in listed]
    assert not unknown, f"{page.relative_to(ROOT)} quotes options its commands do not take: {unknown}"


def test_the_pages_quote_commands_and_link_files_at_all():
    """The checks above look at something: the README and the guides quote dozens of commands and link dozens of files."""
    assert sum(len(_commands(page)) for page in PAGES) > 40
    assert sum(len(_relative_links(page)) for page in PAGES) > 30
