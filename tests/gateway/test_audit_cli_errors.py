"""The audit CLI turns every bad input or file into one line on stderr and a non-zero exit
(no traceback: the `predgate` fixture lets any exception through), and draws its progress
bars on stderr only."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

import gateway.cli.progress
from tests.conftest import HOUSE, bearer

RANGE = ("--since", "2000-01-01", "--until", "2100-01-01")
HEADER = '{"type": "header", "format": "predgate-audit-export/1"}\n'
SECRET_LOOKING = "pgk_0123456789abcdef_do-not-echo-this-line-anywhere-at-all-please"


def _one_line_error(result, *words: str) -> str:
    assert result.exit_code != 0
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("Error: ")
    for word in words:
        assert word in result.stderr
    assert "Traceback" not in result.output
    return str(result.stderr)


def _export(predgate, path: Path, *extra: str, ok: bool = True):
    return predgate("audit", "export", *RANGE, "--out", str(path), *extra, ok=ok)


@pytest.fixture
def public_key(predgate, tmp_path: Path) -> Path:
    """This instance's public key, as `verify --file` needs it."""
    path = tmp_path / "audit.pem"
    path.write_text(predgate("audit", "public-key").stdout)
    return path


def test_a_public_key_that_is_not_a_pem_is_one_line(predgate, tmp_path: Path) -> None:
    export = tmp_path / "log.jsonl"
    _export(predgate, export)
    not_pem = tmp_path / "notapem"
    not_pem.write_text(SECRET_LOOKING)
    said = _one_line_error(
        predgate("audit", "verify", "--file", str(export), "--public-key", str(not_pem), ok=False),
        "--public-key",
        "not an Ed25519 public key in PEM form",
    )
    assert SECRET_LOOKING not in said


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("seq,event_id,ts\n1,abc,2026\n", "line 1 is not JSON"),
        (HEADER + "x,y\n", "line 2 is not JSON"),
        ('{"type": "record", "seq": 1}\n', "line 1 is not the header"),
        (HEADER + "[1, 2]\n", "line 2 is not an"),
        ("", "is empty"),
    ],
)
def test_a_file_that_is_not_a_jsonl_export_says_where(
    predgate, tmp_path: Path, public_key: Path, content: str, words: str
) -> None:
    bad = tmp_path / "x.csv"
    bad.write_text(content.replace("abc", SECRET_LOOKING))
    verify = ("audit", "verify", "--file", str(bad), "--public-key", str(public_key))
    said = _one_line_error(predgate(*verify, ok=False), words)
    assert SECRET_LOOKING not in said


def test_a_file_that_is_not_text_says_so(predgate, tmp_path: Path, public_key: Path) -> None:
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"\xff\xfe\x00binary\n")
    verify = ("audit", "verify", "--file", str(bad), "--public-key", str(public_key))
    _one_line_error(predgate(*verify, ok=False), "not UTF-8")


def test_export_into_a_missing_directory_is_one_line(predgate, tmp_path: Path) -> None:
    out = tmp_path / "missing" / "dir" / "x.jsonl"
    _one_line_error(_export(predgate, out, ok=False), "--out", "does not exist")
    assert not out.parent.exists()


def test_an_existing_export_is_kept_unless_forced(predgate, tmp_path: Path) -> None:
    out = tmp_path / "x.jsonl"
    out.write_text("keep me\n")
    _one_line_error(_export(predgate, out, ok=False), "exists", "--force")
    assert out.read_text() == "keep me\n"
    _export(predgate, out, "--force")
    assert json.loads(out.read_text().splitlines()[0])["type"] == "header"
    assert not list(tmp_path.glob(".*.partial"))


@pytest.mark.parametrize(
    "command",
    [
        ("audit", "export", "--out", "{out}"),
        ("audit", "query"),
        ("audit", "verify"),
    ],
)
@pytest.mark.parametrize(
    ("since", "until"), [("2026-02-01", "2026-01-01"), ("2026-01-01", "2026-01-01")]
)
def test_since_after_until_is_refused(
    predgate, session, tmp_path: Path, command, since: str, until: str
) -> None:
    out = tmp_path / "x.jsonl"
    args = [part.format(out=out) for part in command]
    result = predgate(*args, "--since", since, "--until", until, ok=False)
    _one_line_error(result, "--until must be later than --since")
    assert not out.exists()


def test_a_cursor_that_is_not_one_is_refused(predgate) -> None:
    _one_line_error(
        predgate("audit", "query", "--cursor", "bm90LWEtY3Vyc29y", ok=False),
        "--cursor",
        "not one this log gave out",
    )


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """What a terminal on stderr would show: progress bars are drawn only on a terminal."""
    screen = io.StringIO()

    def console() -> Console:
        return Console(file=screen, force_terminal=True, width=100)

    monkeypatch.setattr(gateway.cli.progress, "_console", console)
    return screen


def test_progress_goes_to_stderr_and_stdout_stays_clean(
    predgate, client, world, tmp_path: Path, public_key: Path, terminal: io.StringIO
) -> None:
    for _ in range(3):
        client.post("/v1/predict", json=HOUSE, headers=bearer(world.acme_key))
    export = tmp_path / "log.jsonl"
    exported = _export(predgate, export)
    assert exported.stdout.startswith("exported ")
    assert "exporting" in terminal.getvalue()

    verified = predgate("audit", "verify", "--json")
    assert json.loads(verified.stdout)["ok"] is True
    offline = predgate(
        "audit", "verify", "--file", str(export), "--public-key", str(public_key), "--json"
    )
    assert json.loads(offline.stdout)["ok"] is True
    assert "verifying" in terminal.getvalue()

    cut = datetime.now(UTC).isoformat()
    everything = tmp_path / "all.jsonl"
    predgate("audit", "export", "--since", "2000-01-01", "--until", cut, "--out", str(everything))
    terminal.truncate(0)
    pruned = predgate("audit", "prune", "--before", cut, "--export", str(everything))
    assert pruned.stdout.startswith("removed ")
    assert "verifying the export" in terminal.getvalue()


def test_no_progress_bar_off_a_terminal(predgate, tmp_path: Path) -> None:
    result = _export(predgate, tmp_path / "x.jsonl")
    assert result.stderr == ""
