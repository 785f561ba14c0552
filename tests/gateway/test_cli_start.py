"""The command line as an operator meets it: quick to start, versioned, documented, and bound to
one instance that it finds or refuses (never one it makes up in the working directory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import click
import pytest
from alembic.script import ScriptDirectory
from click.testing import CliRunner

from config.secrets import SECRET_FILE_NAME
from db.migrations import MIGRATIONS_DIR, head_revision
from gateway.cli import cli

# What a command that neither trains nor compiles must not import (bench/cli_start.py times it).
MODEL_STACK = ("sklearn", "skl2onnx", "onnx", "onnxruntime", "pandas", "scipy", "skops")
# No instance anywhere but where the test says: these variables would point at one.
NO_INSTANCE = {
    "PREDGATE_DATA_DIR": None,
    "PREDGATE_DATABASE_URL": None,
    "PREDGATE_SECRET_KEY": None,
    "PREDGATE_AUDIT_SIGNING_KEY": None,
}


def test_the_command_line_does_not_import_the_model_stack() -> None:
    # Every command module is loaded, as `predgate --help` does; a fresh interpreter, since
    # this one has the model stack loaded by other tests.
    probe = (
        "import sys, click; from gateway.cli import cli; "
        "ctx = click.Context(cli); "
        "[cli.get_command(ctx, name) for name in cli.list_commands(ctx)]; "
        f"print([m for m in {MODEL_STACK!r} if m in sys.modules])"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_the_head_revision_read_without_alembic_is_alembics() -> None:
    # Commands check the database's revision without importing Alembic (db.migrations).
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    assert head_revision() == script.get_current_head()


def test_version_is_the_installed_package_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"predgate {version('predgate')}\n"


def _commands(
    group: click.Group, ctx: click.Context, path: tuple[str, ...] = ()
) -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = [(" ".join(path) or "predgate", group)]
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, name
        if isinstance(command, click.Group):
            found += _commands(command, ctx, (*path, name))
        else:
            found.append((" ".join((*path, name)), command))
    return found


def test_every_option_and_argument_is_documented() -> None:
    ctx = click.Context(cli, info_name="predgate")
    undocumented = []
    for name, command in _commands(cli, ctx):
        text = command.help or ""
        assert text.strip(), f"`{name}` has no help"
        for param in command.params:
            if isinstance(param, click.Option) and not param.help:
                undocumented.append(f"{name} {param.opts[0]}")
            if isinstance(param, click.Argument):
                shown = param.make_metavar(ctx).split("[")[0].strip(".")
                if shown not in text:
                    undocumented.append(f"{name} {shown}")
    assert undocumented == []


def test_without_an_instance_a_command_refuses_naming_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["tenants", "list"], env=NO_INSTANCE)
    expected = tmp_path.resolve() / "var"
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1
    assert f"no predgate instance in {expected}" in result.output
    assert f"predgate --data-dir {expected} db upgrade" in result.output
    assert "demo" in result.output
    assert list(tmp_path.iterdir()) == []  # nothing was created on the way


@pytest.mark.parametrize("how", ["option", "variable"])
def test_an_explicit_data_dir_is_created_by_db_upgrade_only(tmp_path: Path, how: str) -> None:
    data_dir = tmp_path / "instance"
    args, env = (
        (["--data-dir", str(data_dir)], NO_INSTANCE)
        if how == "option"
        else ([], {**NO_INSTANCE, "PREDGATE_DATA_DIR": str(data_dir)})
    )
    runner = CliRunner()
    refused = runner.invoke(cli, [*args, "keys", "list"], env=env)
    assert refused.exit_code == 1
    assert f"no predgate instance in {data_dir}" in refused.output
    assert not data_dir.exists()

    created = runner.invoke(cli, [*args, "db", "upgrade"], env=env)
    assert created.exit_code == 0, created.output
    assert str(data_dir) in created.output
    assert (data_dir / SECRET_FILE_NAME).is_file()
    listed = runner.invoke(cli, [*args, "keys", "list"], env=env)
    assert listed.exit_code == 0, listed.output


def test_default_instance_in_var_is_found_once_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `make run`: `predgate demo` creates ./var, `predgate serve` and the rest then find it.
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"], env=NO_INSTANCE).exit_code == 0
    listed = runner.invoke(cli, ["tenants", "list"], env=NO_INSTANCE)
    assert listed.exit_code == 0, listed.output
    assert (tmp_path / "var" / SECRET_FILE_NAME).is_file()


def test_offline_verify_needs_a_public_key_and_creates_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    export = tmp_path / "export.jsonl"
    export.write_text('{"kind": "record"}\n')
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["audit", "verify", "--file", str(export)], env=NO_INSTANCE)
    assert result.exit_code == 1
    assert "--public-key" in result.output
    assert "Traceback" not in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["export.jsonl"]


def test_tables_are_aligned_plain_text_and_json_is_unchanged(predgate) -> None:
    predgate("tenants", "create", "acme")
    predgate("tenants", "create", "a-much-longer-name")
    table = predgate("tenants", "list").stdout.splitlines()
    assert table[0].split() == ["TENANT", "STATUS", "MODEL", "CREATED", "RATE", "LIMIT"]
    assert "\x1b" not in "".join(table)
    status_at = table[0].index("STATUS")
    assert [line[status_at:].split()[0] for line in table[1:]] == ["active", "active"]
    listed = json.loads(predgate("tenants", "list", "--json").stdout)
    assert sorted(t["tenant"] for t in listed) == ["a-much-longer-name", "acme"]
    assert set(listed[0]) == {"tenant", "status", "model", "created_at", "rate_limit"}


def test_table_cells_are_text_not_markup(predgate) -> None:
    predgate("tenants", "create", "acme")
    predgate("keys", "issue", "--tenant", "acme", "--label", "[bold]ops[/bold]")
    assert "[bold]ops[/bold]" in predgate("keys", "list").stdout


def test_training_reports_progress_on_stderr_only(predgate, tmp_path: Path) -> None:
    data = tmp_path / "data.csv"
    data.write_text("x,y\n" + "".join(f"{i},{2 * i + 1}\n" for i in range(40)))
    args = ("models", "train", "--data", str(data), "--target", "y", "--name", "line")
    shown = predgate(*args, "--algorithm", "linear")
    assert shown.stderr.count("\n... ") + shown.stderr.startswith("... ") >= 2
    assert "registered line@1" in shown.stdout
    quiet = predgate(*args, "--algorithm", "random-forest", "--json")
    assert quiet.stderr == ""
    assert json.loads(quiet.stdout)["version"] == 2


@pytest.mark.parametrize(
    "command",
    [
        ["tenants", "list"],
        ["keys", "list"],
        ["clients", "list"],
        ["models", "list", "--limit", "1"],
        ["audit", "query", "--limit", "1"],
        ["tenants", "usage", "nobody"],
    ],
)
def test_running_a_command_that_neither_trains_nor_compiles_loads_no_model_stack(
    tmp_path: Path, command: list[str]
) -> None:
    # What the command runs, not only what its module imports: a list that reached into the
    # HTTP layer for a cursor once pulled scikit-learn in at run time.
    env = {k: v for k, v in os.environ.items() if k not in NO_INSTANCE}
    data_dir = str(tmp_path / "instance")
    launch = [sys.executable, "-c", "from gateway.cli import main; main()"]
    subprocess.run(
        [*launch, "--data-dir", data_dir, "db", "upgrade"],
        env=env,
        check=True,
        capture_output=True,
    )
    probe = (
        "import sys, atexit\n"
        f"atexit.register(lambda: print([m for m in {MODEL_STACK!r} if m in sys.modules]))\n"
        "from gateway.cli import main\n"
        f"sys.argv = ['predgate', '--data-dir', {data_dir!r}, *{command!r}]\n"
        "main()\n"
    )
    ran = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert ran.stdout.strip().splitlines()[-1] == "[]", (ran.stdout, ran.stderr)


def test_the_command_list_of_help_says_what_each_command_says_of_itself() -> None:
    # `predgate --help` lists commands from gateway.cli.SHORT_HELP without importing them.
    import click

    from gateway.cli import SHORT_HELP, cli

    ctx = click.Context(cli)
    assert set(SHORT_HELP) == set(cli.list_commands(ctx))
    for name, short in SHORT_HELP.items():
        command = cli.get_command(ctx, name)
        assert command is not None
        assert (command.help or "").split()[:3] == short.split()[:3], name
    listed = CliRunner().invoke(cli, ["--help"])
    assert all(short in listed.output for short in SHORT_HELP.values())
