"""Start and stop the servers under benchmark: gunicorn for the baselines, `predgate serve`."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from bench.cpu import process_started, process_tree

HOST = "127.0.0.1"
BIN = Path(sys.executable).parent
START_TIMEOUT_SECONDS = 60
STOP_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Server:
    """A running server: the gunicorn master's pid, its URL, its worker count and its log."""

    pid: int
    base_url: str
    workers: int
    log: Path

    def pids(self) -> list[int]:
        """The master and its workers, as running now."""
        return process_tree(self.pid)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's output."""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


class ServerError(RuntimeError):
    """A server did not start, or exited: the message ends with its log."""


def unwind_on_sigterm() -> None:
    """Make SIGTERM unwind like Ctrl-C, so a benchmark's servers, databases and keys are cleaned
    up by its `finally` blocks either way."""
    signal.signal(signal.SIGTERM, _exit_on_signal)


def _exit_on_signal(signum: int, _frame: object) -> NoReturn:
    raise SystemExit(128 + signum)


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@contextmanager
def gunicorn_server(
    app: str, env: Mapping[str, str], log: Path, *, workers: int = 2, threads: int = 8
) -> Iterator[Server]:
    """An app factory such as 'bench.apps:floor_app()' under gunicorn gthread workers."""
    port = free_port()
    command = [
        str(BIN / "gunicorn"),
        *("--workers", str(workers), "--worker-class", "gthread", "--threads", str(threads)),
        *("--bind", f"{HOST}:{port}", "--log-level", "warning", app),
    ]
    with _serve(command, env, log, port, workers) as server:
        yield server


@contextmanager
def granian_server(
    app: str, env: Mapping[str, str], log: Path, *, workers: int = 2, threads: int = 8
) -> Iterator[Server]:
    """An app factory such as 'bench.apps:floor_app' under granian (what `predgate serve` uses)."""
    port = free_port()
    command = [
        str(BIN / "granian"),
        *("--interface", "wsgi", "--factory", "--no-ws", "--log-level", "error"),
        *("--workers", str(workers), "--blocking-threads", str(threads)),
        *("--backpressure", str(threads), "--host", HOST, "--port", str(port), app),
    ]
    with _serve(command, env, log, port, workers) as server:
        yield server


@contextmanager
def predgate_server(
    env: Mapping[str, str],
    log: Path,
    *,
    workers: int,
    threads: int = 8,
    behind_proxy: bool = False,
) -> Iterator[Server]:
    """`predgate serve` with the data directory and database that `env` names."""
    port = free_port()
    command = [
        str(BIN / "predgate"),
        "serve",
        *("--port", str(port), "--workers", str(workers), "--threads", str(threads)),
        *(["--behind-proxy"] if behind_proxy else []),
    ]
    with _serve(command, env, log, port, workers) as server:
        yield server


@contextmanager
def _serve(
    command: list[str], env: Mapping[str, str], log: Path, port: int, workers: int
) -> Iterator[Server]:
    with log.open("ab") as output:
        # Its own session: Ctrl-C reaches only the driver, which then stops servers in order.
        process = subprocess.Popen(
            command,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(process.pid, f"http://{HOST}:{port}", workers, log)
    try:
        _wait_until_up(process, server, port)
        yield server
    finally:
        _stop(process, server)


def _wait_until_up(process: subprocess.Popen[bytes], server: Server, port: int) -> None:
    """Until the port accepts and every worker has been forked."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerError(
                f"{process.args} exited with {process.returncode}; its log:\n{server.log_tail()}"
            )
        if _accepts(port) and len(server.pids()) == 1 + server.workers:
            return
        time.sleep(0.1)
    raise ServerError(
        f"{process.args} not up within {START_TIMEOUT_SECONDS}s; its log:\n{server.log_tail()}"
    )


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes], server: Server) -> None:
    """SIGTERM (gunicorn's graceful stop); SIGKILL for the whole tree after the timeout."""
    workers = {pid: process_started(pid) for pid in server.pids()[1:]}
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    for pid, started in workers.items():
        # A worker outlives its master only if the master died first; the start time shows
        # the pid still names that worker and was not reused.
        if started is not None and process_started(pid) == started:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
