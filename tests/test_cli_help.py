"""Every option of every command says what it does, its default and its environment variable;
``flowyard --version``."""

import argparse
from collections.abc import Iterator

import pytest

from flowyard import __version__
from flowyard.cli import _parser
from tests.test_cli import flowyard


def options(
    parser: argparse.ArgumentParser, command: str = "flowyard"
) -> Iterator[tuple[str, argparse.Action]]:
    """Every argument of ``parser`` and of its subcommands, with the command it belongs to."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from options(sub, f"{command} {name}")
        elif not isinstance(action, argparse._HelpAction | argparse._VersionAction):
            yield command, action


def named(command: str, action: argparse.Action) -> str:
    return f"{command} {'/'.join(action.option_strings) or action.dest}"


def test_every_option_has_a_help_line_naming_its_default() -> None:
    found = list(options(_parser()))
    assert len(found) > 60  # every command was walked
    for command, action in found:
        assert action.help, f"{named(command, action)} has no help line"
        if action.option_strings:
            assert "(default: " in action.help or "(required)" in action.help, named(
                command, action
            )


def test_options_that_read_a_variable_name_it(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = {named(c, a): a.default for c, a in options(_parser())}
    dests = {action.dest for _, action in options(_parser())}
    for dest in dests:
        monkeypatch.setenv(f"FLOWYARD_{dest.upper()}", "7")
    reading = 0
    for command, action in options(_parser()):
        variable = f"FLOWYARD_{action.dest.upper()}"
        reads = action.default != plain[named(command, action)]
        assert reads == (variable in (action.help or "")), (named(command, action), reads)
        reading += reads
    assert reading >= 20  # serve's options, --db, --url, --api-key ...


def test_version() -> None:
    done = flowyard("--version")
    assert done.returncode == 0 and done.stdout == f"flowyard {__version__}\n"
