"""Fault-test harness: a real `predgate serve` over a private PostgreSQL (or SQLite) and a
private Redis, a bounded prediction load that records every answer, and a /healthz probe.

Nothing here touches the machine's own PostgreSQL or Redis: each test starts its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import pytest
import requests

from tests.pg_support import free_port, postgres_fixture
from tests.ratelimit_support import RedisServer
from tests.serving_support import run_predgate

PREDGATE = str(Path(sys.executable).with_name("predgate"))
CLIENTS = 4
CLIENT_TIMEOUT = 30.0
PROBE_INTERVAL = 0.25
PROBE_TIMEOUT = 2.0
READY_TIMEOUT = 30.0
SHOW = 10  # offending request ids listed in a failure message
PREDICTION = {"area": 120, "rooms": 2, "bathrooms": 1, "location": 1}  # acme's house-price

postgres = postgres_fixture()


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A private redis-server on a free port (never the machine's), killed at teardown."""
    server = RedisServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()


@dataclass(frozen=True)
class Reply:
    """One answer the load received."""

    at: float  # time.monotonic() when it arrived
    request_id: str | None
    status: int
    content_type: str
    body: str


class Gateway:
    """A predgate deployment: demo data made with the CLI, and `predgate serve` running it."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder = folder
        self.env = env
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = folder / "gateway.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.api_key = ""

    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run `predgate ARGS...` with this deployment's environment."""
        return subprocess.run(
            [PREDGATE, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def demo(self) -> None:
        """`predgate demo --json`: migrate, train, tenants acme and globex; keep acme's key.
        Run in this process: what it writes is the same, without the executable's imports."""
        result = run_predgate(self.env, "demo", "--json")
        assert result.exit_code == 0, f"predgate demo failed:\n{result.output}"
        tenants = {row["tenant"]: row for row in json.loads(result.stdout)["tenants"]}
        self.api_key = tenants["acme"]["api_key"]

    def serve(self, workers: int, threads: int) -> None:
        """Start `predgate serve` and wait until /healthz answers 200."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    PREDGATE,
                    "serve",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(workers),
                    "--threads",
                    str(threads),
                ],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"predgate serve exited:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.1)
        raise AssertionError(
            f"predgate serve not ready in {READY_TIMEOUT:.0f} s:\n{self.log_tail()}"
        )

    def alive(self) -> bool:
        """Whether the gunicorn master started by serve() still runs."""
        return self.process is not None and self.process.poll() is None

    def stop(self) -> int | None:
        """SIGTERM the gateway (graceful), SIGKILL if it lingers; its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                # Kill the workers too: they would otherwise outlive their master.
                for pid in _children(self.process.pid):
                    _kill(pid)
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def log_tail(self, lines: int = 60) -> str:
        """The end of the gateway's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        return [int(child) for child in path.read_text().split()]
    except OSError:
        return []


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def gateway_env(
    data_dir: Path, database_url: str | None, redis_url: str | None, **extra: str
) -> dict[str, str]:
    """The process environment of a deployment: only our PREDGATE_* variables, none inherited."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREDGATE_")}
    env.update(
        PREDGATE_DATA_DIR=str(data_dir),
        PREDGATE_SECRET_KEY=secrets.token_hex(32),
        PREDGATE_LOG_LEVEL="WARNING",
        PREDGATE_DEFAULT_RATE_LIMIT="1000000/minute",
    )
    if database_url:
        env["PREDGATE_DATABASE_URL"] = database_url
    if redis_url:
        env["PREDGATE_REDIS_URL"] = redis_url
    env.update(extra)
    return env


@pytest.fixture
def deploy(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Make deployments (demo data + a running gateway); every gateway is stopped at teardown."""
    made: list[Gateway] = []

    def make(
        *,
        database_url: str | None,
        redis_url: str | None,
        workers: int = 2,
        threads: int = 8,
        **extra_env: str,
    ) -> Gateway:
        folder = tmp_path / f"gateway-{len(made)}"
        # With PREDGATE_SECRET_KEY set nothing else creates the data directory SQLite lives in.
        (folder / "var").mkdir(parents=True)
        gateway = Gateway(folder, gateway_env(folder / "var", database_url, redis_url, **extra_env))
        made.append(gateway)
        began = time.monotonic()
        gateway.demo()
        demo_done = time.monotonic()
        gateway.serve(workers, threads)
        print(
            f"\ndeployed in {time.monotonic() - began:.1f}s "
            f"(demo {demo_done - began:.1f}s, serve {time.monotonic() - demo_done:.1f}s)"
        )
        return gateway

    try:
        yield make
    finally:
        for gateway in made:
            gateway.stop()
            # Models, artifacts, SQLite: gone; the gateway's log stays in pytest's tmp_path.
            shutil.rmtree(gateway.folder / "var", ignore_errors=True)


@dataclass
class Load:
    """CLIENTS threads POSTing predictions as acme, each with its own session, until stopped."""

    base: str
    api_key: str
    clients: int = CLIENTS
    replies: list[Reply] = field(default_factory=list)
    lost: Counter[str] = field(default_factory=Counter)  # kind of error -> requests without answer
    started_at: float = 0.0
    stopped_at: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        """Start the client threads."""
        self.started_at = time.monotonic()
        self._threads = [
            threading.Thread(target=self._run, name=f"load-{n}", daemon=True)
            for n in range(self.clients)
        ]
        for thread in self._threads:
            thread.start()

    def wait_for_successes(self, count: int, timeout: float) -> None:
        """Wait until `count` predictions succeeded: models loaded, connections pooled."""
        deadline = time.monotonic() + timeout
        while sum(reply.status == 200 for reply in list(self.replies)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"fewer than {count} predictions succeeded within {timeout:.0f} s of load: "
                    f"statuses {dict(Counter(reply.status for reply in self.replies))}, "
                    f"lost {dict(self.lost)}"
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Send no new request; wait for those in flight (at most the client timeout)."""
        if not self.stopped_at:
            self.stopped_at = time.monotonic()
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT + 5)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.api_key}"}
        with requests.Session() as http:
            while not self._stop.is_set():
                try:
                    response = http.post(
                        f"{self.base}/v1/predict",
                        json=PREDICTION,
                        headers=headers,
                        timeout=CLIENT_TIMEOUT,
                    )
                except requests.RequestException as exc:
                    # No answer: counted, not required to be audited (nothing reached a client).
                    with self._lock:
                        self.lost[type(exc).__name__] += 1
                    time.sleep(0.05)  # a refused connection fails at once: do not spin
                    continue
                reply = Reply(
                    at=time.monotonic(),
                    request_id=response.headers.get("X-Request-ID"),
                    status=response.status_code,
                    content_type=response.headers.get("Content-Type", ""),
                    body=response.text,
                )
                with self._lock:
                    self.replies.append(reply)


@dataclass
class HealthProbe:
    """GET /healthz every PROBE_INTERVAL with a PROBE_TIMEOUT; records every failure."""

    base: str
    probes: int = 0
    failures: list[str] = field(default_factory=list)
    started_at: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Start probing."""
        self.started_at = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="healthz-probe", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop probing."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=PROBE_TIMEOUT + 5)

    def _run(self) -> None:
        with requests.Session() as http:
            while not self._stop.is_set():
                sent = time.monotonic()
                self.probes += 1
                try:
                    response = http.get(f"{self.base}/healthz", timeout=PROBE_TIMEOUT)
                    if response.status_code != 200:
                        self._fail(sent, f"status {response.status_code}")
                except requests.RequestException as exc:
                    self._fail(sent, type(exc).__name__)
                self._stop.wait(max(0.0, PROBE_INTERVAL - (time.monotonic() - sent)))

    def _fail(self, sent: float, what: str) -> None:
        self.failures.append(f"t={sent - self.started_at:.2f}s {what}")


def audit_rows(dsn: str) -> list[tuple[str | None, int | None, str | None, int, str]]:
    """(request_id, http_status, route, seq, hash) of every audit record, in chain order."""
    with psycopg.connect(dsn, connect_timeout=10) as connection:
        return connection.execute(
            "SELECT request_id, http_status, route, seq, hash FROM audit_records ORDER BY seq"
        ).fetchall()


def listed(ids: list[str]) -> str:
    """At most SHOW ids and how many more there are."""
    more = f" (+{len(ids) - SHOW} more)" if len(ids) > SHOW else ""
    return ", ".join(ids[:SHOW]) + more
