"""The README as a new user reads it: every command in a `sh` block runs in bash as written and
names commands and options that exist, the synopsis lists every command and option there is, and
no link points outside the repository."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import click
import pytest

from gateway.cli import cli

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"```(\w*)\n(.*?)```", re.S)


def _blocks(language: str) -> list[str]:
    return [body for lang, body in _BLOCK.findall(README.read_text()) if lang == language]


def _commands() -> dict[tuple[str, ...], click.Command]:
    found: dict[tuple[str, ...], click.Command] = {}

    def walk(command: click.Command, path: tuple[str, ...], parent: click.Context | None) -> None:
        ctx = click.Context(command, info_name=path[-1] if path else "predgate", parent=parent)
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None
                walk(sub, (*path, name), ctx)
        else:
            found[path] = command

    walk(cli, (), None)
    return found


def _options(command: click.Command) -> set[str]:
    return {
        opt
        for param in command.params
        if isinstance(param, click.Option)
        for opt in param.opts + param.secondary_opts
    }


def _invocations() -> list[list[str]]:
    """Each `predgate ...` command of the sh blocks, as bash would split it: from the word
    `predgate` (also inside a command substitution) to the first unquoted `|`, `;`, `&` or `)`."""
    found: list[list[str]] = []
    for block in _blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            for start in re.finditer(r"(?:^|[\s(])predgate\s", line):
                words = shlex.split(_until_operator(line[start.end() :]), comments=True)
                found.append(words)
    return found


def _without_comment(line: str) -> str:
    return line[: _scan(line, stop="#")]


def _until_operator(text: str) -> str:
    return text[: _scan(text, stop="|;&)")]


def _scan(text: str, *, stop: str) -> int:
    """The index of the first `stop` character outside quotes and command substitutions (bash
    quoting: each `$(...)` has quotes of its own), else len(text)."""
    quotes = [""]  # one quote state per nesting level of $(...)
    i = 0
    while i < len(text):
        char, quote = text[i], quotes[-1]
        if quote == "'":
            quotes[-1] = "" if char == "'" else quote
        elif char == "\\":
            i += 1
        elif text.startswith("$(", i):
            quotes.append("")
            i += 1
        elif quote == '"':
            quotes[-1] = "" if char == '"' else quote
        elif char in "'\"":
            quotes[-1] = char
        elif char == ")" and len(quotes) > 1:
            quotes.pop()
        elif char in stop and len(quotes) == 1 and (char != "#" or i == 0 or text[i - 1].isspace()):
            return i
        i += 1
    return len(text)


def test_every_sh_block_is_valid_bash() -> None:
    for block in _blocks("sh"):
        checked = subprocess.run(["bash", "-n"], input=block, text=True, capture_output=True)
        assert checked.returncode == 0, (block, checked.stderr)


PROGRAMS = {
    "predgate",
    "curl",
    "make",
    "python",
    "python3",
    "export",
    "eval",
    "docker",
    "jq",
    "grep",
}


def test_every_command_starts_with_a_program_a_reader_has() -> None:
    # An unquoted `;` in an argument (a rate-limit policy) would start a command named after
    # the rest of the argument: bash -n accepts that, this does not.
    for block in _blocks("sh"):
        for line in block.replace("\\\n", " ").splitlines():
            rest = _without_comment(line)
            while rest.strip():
                command = _until_operator(rest)
                words = shlex.split(command)
                # `TOKEN=$(curl ...`: the program is the one the substitution runs.
                words = [re.sub(r"^[A-Z_]+=\$\(", "", w) for w in words]
                words = [w for w in words if w and not re.match(r"^[A-Z_]+=", w)]
                if words:
                    assert words[0] in PROGRAMS, f"{line!r} runs {words[0]!r}"
                rest = rest[len(command) + 1 :].lstrip("|&")


def test_every_predgate_command_in_the_examples_exists_with_its_options() -> None:
    commands = _commands()
    invocations = _invocations()
    assert len(invocations) >= 15
    for words in invocations:
        args = list(words)
        while args and args[0].startswith("--"):  # top-level options: --data-dir DIR
            args = args[2:] if args[0] == "--data-dir" else args[1:]
        path = next(
            (p for p in sorted(commands, key=len, reverse=True) if tuple(args[: len(p)]) == p),
            None,
        )
        assert path is not None, f"no such command: predgate {' '.join(words)}"
        known = _options(commands[path])
        for word in args[len(path) :]:
            if word.startswith("--"):
                assert word.split("=")[0] in known, f"predgate {' '.join(words)}: {word}"


def test_the_synopsis_lists_every_command_and_option() -> None:
    synopsis = next(b for b in _blocks("text") if b.startswith("predgate --version"))
    lines = synopsis.replace("\n   ", " ").splitlines()
    for path, command in _commands().items():
        prefix = "predgate " + " ".join(path)
        described = " ".join(line for line in lines if line.startswith(prefix))
        # `tenants suspend TENANT | resume TENANT` lists two commands on one line.
        described += " ".join(line for line in lines if f"| {path[-1]} " in line)
        assert described, f"the synopsis leaves out `{prefix}`"
        for option in _options(command) - {"--help"}:
            if option.startswith("--") and option not in described:
                pytest.fail(f"the synopsis of `{prefix}` leaves out {option}")


def test_no_link_points_outside_the_repository() -> None:
    text = README.read_text()
    for target in re.findall(r"\]\(([^)]+)\)", text):
        assert not target.startswith(("../", "/")), target
        if not target.startswith(("http://", "https://", "#")):
            assert (README.parent / target).exists(), target
