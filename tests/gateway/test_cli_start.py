"""The command line as an operator meets it: quick to start, versioned, documented, and bound to
one instance that it finds or refuses (never one it makes up in the working directory)."""

from __future__ import annotations

import base64
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
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from audit import usage
from audit.signing import SIGNING_KEY_FILE, SigningKeyError, load_signer, public_pem
from config.secrets import SECRET_FILE_NAME
from db.migrations import MIGRATIONS_DIR, head_revision
from gateway.cli import cli
from gateway.cli.usage import MAX_DAYS

# What a command that neither trains nor compiles must not import (bench/cli_start.py times it).
MODEL_STACK = ("sklearn", "skl2onnx", "onnx", "onnxruntime", "pandas", "scipy", "skops")
# Nor, to read, the rate-limit policy parser, nor the signing library unless a checkpoint is due.
READ_SPARES = ("limits", "cryptography")
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
    data_dir = tmp_path / "instance"
    _run_predgate(data_dir, "db", "upgrade")
    assert _loaded_by(data_dir, command, MODEL_STACK) == []


def test_a_quick_read_loads_neither_the_policy_parser_nor_the_signing_library(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "instance"
    _run_predgate(data_dir, "db", "upgrade")
    _run_predgate(data_dir, "audit", "query")  # its record signs the first checkpoint
    for command in (["tenants", "list"], ["keys", "list"], ["clients", "list"], ["models", "list"]):
        assert _loaded_by(data_dir, command, READ_SPARES) == [], command
    # The record of the read signs nothing until a checkpoint is due again (60 s).
    assert _loaded_by(data_dir, ["audit", "query", "--limit", "1"], READ_SPARES) == []


def _run_predgate(data_dir: Path, *args: str) -> None:
    launch = [sys.executable, "-c", "from gateway.cli import main; main()"]
    subprocess.run(
        [*launch, "--data-dir", str(data_dir), *args],
        env=_outside_env(),
        check=True,
        capture_output=True,
    )


def _loaded_by(data_dir: Path, command: list[str], modules: tuple[str, ...]) -> list[str]:
    """Which of `modules` running `predgate COMMAND` in a fresh interpreter loaded."""
    probe = (
        "import atexit, json, sys\n"
        f"loaded = lambda: [m for m in {modules!r} if m in sys.modules]\n"
        "atexit.register(lambda: print(json.dumps(loaded())))\n"
        "from gateway.cli import main\n"
        f"sys.argv = ['predgate', '--data-dir', {str(data_dir)!r}, *{command!r}]\n"
        "main()\n"
    )
    ran = subprocess.run(
        [sys.executable, "-c", probe], env=_outside_env(), capture_output=True, text=True
    )
    assert ran.stdout.strip(), ran.stderr  # printed at exit, also after a refusal
    loaded: list[str] = json.loads(ran.stdout.strip().splitlines()[-1])
    return loaded


def _outside_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in NO_INSTANCE}


def test_the_usage_days_bound_is_the_audit_logs() -> None:
    # The command line names it without importing audit.usage, which loads the audit tables.
    assert MAX_DAYS == usage.MAX_DAYS


def test_the_signing_key_is_read_without_cryptography_as_cryptography_reads_it(
    tmp_path: Path,
) -> None:
    generated = load_signer(tmp_path)  # writes the instance's key file
    pem = (tmp_path / SIGNING_KEY_FILE).read_text()
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    assert generated.seed == load_signer(tmp_path).seed == seed
    assert generated.public_pem() == public_pem(key.public_key())
    lines = pem.splitlines()
    configured = (
        base64.b64encode(seed).decode(),
        pem.replace("\n", "\r\n"),
        "\n".join([lines[0], lines[1][:20], lines[1][20:], lines[2]]),
        pem + "trailing text",  # not the layout read here: cryptography parses it
    )
    for text in configured:
        assert load_signer(tmp_path / "unused", text).seed == seed
    assert not (tmp_path / "unused").exists()  # a configured key writes no key file


@pytest.mark.parametrize(
    ("configured", "refusal"),
    [
        ("bm90IGEga2V5", "not a valid Ed25519 private key"),  # base64 of 9 bytes
        ("not base64!", "not a valid Ed25519 private key"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "not a valid Ed25519"),
    ],
)
def test_a_configured_signing_key_that_is_no_key_is_refused(
    tmp_path: Path, configured: str, refusal: str
) -> None:
    with pytest.raises(SigningKeyError, match=refusal):
        load_signer(tmp_path, configured)


def test_a_configured_signing_key_of_another_algorithm_is_refused(tmp_path: Path) -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(SigningKeyError, match="not an Ed25519 key"):
        load_signer(tmp_path, pem.decode())


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
