"""`predgate serve` as a test starts it: on a free loopback port, with a test's settings in its
environment, answering /healthz before the test goes on; and the `predgate` commands that set
up what it serves, run in the test's own process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import requests
import urllib3
from click.testing import CliRunner, Result

from config import Settings
from gateway.cli import cli
from tests.ratelimit_support import free_port

PREDGATE = str(Path(sys.executable).with_name("predgate"))
# A loaded machine (the full suite, other jobs) may take tens of seconds to import and fork.
READY_SECONDS = 60.0
PROBE_TIMEOUT = 2.0
LOG_TAIL_LINES = 40
# Anything a probe of a server still starting may raise: refused or reset connections, reads
# that time out (ReadTimeout, or urllib3's error while the body is read), a socket error.
NOT_READY_YET = (requests.RequestException, urllib3.exceptions.HTTPError, OSError)


def run_predgate(env: Mapping[str, str], *args: str) -> Result:
    """`predgate ARGS...` in this process, with exactly the PREDGATE_* variables of `env` (none
    inherited). The executable would first spend seconds importing the CLI and scikit-learn,
    which this process has imported already: `demo` takes about a second here, several as a
    process of its own."""
    variables: dict[str, str | None] = dict.fromkeys(
        (name for name in os.environ if name.startswith("PREDGATE_")), None
    )
    variables.update((name, value) for name, value in env.items() if name.startswith("PREDGATE_"))
    return CliRunner().invoke(cli, list(args), env=variables, catch_exceptions=False)


def start_serving(
    settings: Settings, *args: str, env: dict[str, str] | None = None, port: int | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """`predgate serve ARGS...` (one worker, two threads unless ARGS say otherwise) on this
    test's database and data directory; (the process, its base URL) once it answers. Its
    output goes to `serve-PORT.log` beside the data directory; a failed start shows its tail."""
    port = port or free_port()
    environment = {
        "PATH": str(Path(sys.executable).parent),
        "PREDGATE_DATA_DIR": str(settings.data_dir),
        "PREDGATE_DATABASE_URL": settings.database_url,
        "PREDGATE_SECRET_KEY": settings.secret_key.decode(),
        "PREDGATE_LOG_LEVEL": "WARNING",
        **(env or {}),
    }
    # Beside the data directory (the test's tmp_path), which the server creates itself.
    log_path = settings.data_dir.parent / f"serve-{port}.log"
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            [PREDGATE, "serve", "--port", str(port), "--workers", "1", "--threads", "2", *args],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base, server, log_path=log_path)
    except BaseException:
        server.kill()
        server.wait(timeout=30)
        raise
    return server, base


def wait_until_serving(
    base: str,
    server: subprocess.Popen[bytes],
    *,
    log_path: Path | None = None,
    seconds: float = READY_SECONDS,
) -> None:
    """Until /healthz answers 200. AssertionError, with the tail of the server's log, if the
    server exits or does not answer within `seconds`; a probe that fails in any way while it
    starts (refused, reset, timed out) is retried."""
    deadline = time.monotonic() + seconds
    last_failure = "no probe answered"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise AssertionError(
                f"predgate serve exited with {server.returncode}{log_tail(log_path)}"
            )
        try:
            status = requests.get(f"{base}/healthz", timeout=PROBE_TIMEOUT).status_code
        except NOT_READY_YET as exc:
            last_failure = f"{type(exc).__name__}"
        else:
            if status == 200:
                return
            last_failure = f"/healthz answered {status}"
        time.sleep(0.1)
    raise AssertionError(
        f"predgate serve did not answer /healthz within {seconds:.0f} s "
        f"(last: {last_failure}){log_tail(log_path)}"
    )


def log_tail(log_path: Path | None, lines: int = LOG_TAIL_LINES) -> str:
    """The last lines of a server log, as an error message ends with them."""
    if log_path is None or not log_path.exists():
        return ""
    tail = log_path.read_text(errors="replace").splitlines()[-lines:]
    return f"\n--- last {len(tail)} lines of {log_path} ---\n" + "\n".join(tail)
