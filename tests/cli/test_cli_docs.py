"""docs/CLI.md documents the parser that ``sandboxctl`` really has.

Every command has a ``### `command ...``` section naming each of its options,
every global option is in the conventions, and the exit-code table lists
exactly ``EXIT_CODES`` - so a new command or option cannot ship undocumented
and a removed one cannot stay in the docs.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from replay import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "CLI.md"
#: Options every command has, documented once in the conventions.
COMMON = {"-h", "--help", "-o", "--output"}


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _commands() -> dict[str, argparse.ArgumentParser]:
    parser = cli.build_parser()  # every sub-parser built (ship's too)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            # choices maps aliases as well; keep each parser once, by its own name.
            return {p.prog.split()[-1]: p for p in dict.fromkeys(action.choices.values())}
    raise AssertionError("no sub-commands")


def _sections(text: str) -> dict[str, str]:
    """``### `name ...``` heading -> its text up to the next heading."""
    parts = re.split(r"^(#{2,3} .*)$", text, flags=re.M)
    out = {}
    for heading, body in zip(parts[1::2], parts[2::2], strict=True):
        m = re.match(r"### `([a-z]+)", heading)
        if m:
            out[m.group(1)] = heading + body
    return out


def _mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def _documented_options(parser: argparse.ArgumentParser) -> list[Sequence[str]]:
    return [
        a.option_strings
        for a in parser._actions
        if a.option_strings
        and a.help != argparse.SUPPRESS
        and not COMMON.intersection(a.option_strings)
    ]


COMMANDS = _commands()


def test_every_command_has_a_section_and_every_section_a_command() -> None:
    sections = _sections(_text())
    assert sorted(sections) == sorted(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_command_section_names_each_option(name: str) -> None:
    section = _sections(_text())[name]
    missing = [
        "/".join(opts)
        for opts in _documented_options(COMMANDS[name])
        if not any(_mentions(section, o) for o in opts)
    ]
    assert not missing, f"docs/CLI.md ### `{name}` does not mention {missing}"
    if name == "pods":
        assert "alias `ls`" in section.splitlines()[0]


def test_the_global_options_are_in_the_conventions() -> None:
    text = _text()
    conventions = text[text.index("## Conventions") : text.index("## Exit codes")]
    for opts in _documented_options(cli.build_parser()):
        assert any(_mentions(conventions, o) for o in opts), opts


def test_the_exit_code_table_is_exit_codes() -> None:
    text = _text()
    table = text[text.index("## Exit codes") : text.index("## Commands")]
    documented = [int(code) for code in re.findall(r"^\| (\d+) \|", table, re.M)]
    assert documented == list(cli.EXIT_CODES)
