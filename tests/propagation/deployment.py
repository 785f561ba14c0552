"""How fast a change made from the CLI reaches every worker of every replica.

A deployment is two `predgate serve --workers 2` gateways on one PostgreSQL schema and one Redis
key prefix of their own. A trial hammers both gateways with one fresh subject (an API key, an
OAuth client's token, a tenant), makes one change from another process, and measures how long
after the change some worker still answered as before it, and which worker each answer came
from (the audit log names the process of every request id).

Changes run as `predgate` commands in processes forked from a CLI host that imported the CLI
once: the same entry point, arguments, environment and database work as the `predgate`
executable, without its ~5 s of imports per command (`ExecCli` runs the executable itself).

    python -m tests.propagation.deployment    # the CLI host: JSON argv lines in, results out
"""

from __future__ import annotations

import contextlib
import importlib
import itertools
import json
import math
import os
import secrets
import select
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NoReturn, Protocol
from urllib.parse import quote

import pytest
import redis
import requests
from sqlalchemy import Engine, bindparam, create_engine, text

from tests.serving_support import run_predgate

ROOT = Path(__file__).resolve().parents[2]
PREDGATE = str(Path(sys.executable).with_name("predgate"))

GATEWAYS = 2
WORKERS = 2  # per gateway
THREADS = 4  # per worker
HAMMERS_PER_GATEWAY = 4
# How long after the change returned the answers are still watched: past the 1 s requirement,
# so a late worker shows up as a delay above it rather than as silence.
OBSERVE_SECONDS = 1.5
WARM_TIMEOUT_SECONDS = 20.0
READY_TIMEOUT_SECONDS = 90.0
REQUEST_TIMEOUT_SECONDS = 15.0
CLI_TIMEOUT_SECONDS = 180.0
POLL_SECONDS = 0.05
PREPARE_CONCURRENCY = 4
# Trials where some worker served nothing after the change prove nothing and are run again,
# at most this many times per kind.
MAX_RETRIES = 5
SHOW = 8  # offending answers listed in a failure message

BEFORE_MODEL = "house-price"
AFTER_MODEL = "iris"
KINDS = ("key_revoke", "client_revoke", "token_revoke", "tenant_suspend", "reassign")
# The answer each kind gives after its change: (status, problem code, model name).
AFTER: dict[str, tuple[int, str | None, str | None]] = {
    "key_revoke": (401, "revoked_key", None),
    "client_revoke": (401, "client_revoked", None),
    "token_revoke": (401, "token_revoked", None),
    "tenant_suspend": (403, "tenant_suspended", None),
    "reassign": (200, None, AFTER_MODEL),
}
CLIENT_KINDS = frozenset({"client_revoke", "token_revoke"})
# The audit record each change writes: in the change's own transaction for the CLI acts; for
# /oauth/revoke stamped when the request started, before the denylist entry commits.
CHANGE_EVENTS = {
    "key_revoke": "key.revoke",
    "client_revoke": "client.revoke",
    "token_revoke": "token.revoke",
    "tenant_suspend": "tenant.suspend",
    "reassign": "tenant.assign",
}


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _kill_group(process: subprocess.Popen[Any]) -> None:
    """SIGKILL a process started in its own session, with everything it forked."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


# --- running `predgate` commands -----------------------------------------------------------


@dataclass(frozen=True)
class CliResult:
    """What one `predgate` command printed and how it exited."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def check(self) -> CliResult:
        """This result, or an AssertionError naming the command and its output."""
        if self.returncode != 0:
            raise AssertionError(
                f"predgate {' '.join(self.argv)} exited {self.returncode}:\n"
                f"{self.stdout}\n{self.stderr}"
            )
        return self


class Cli(Protocol):
    """Runs `predgate ARGS...` in a process of its own."""

    def run(self, *argv: str) -> CliResult: ...

    def close(self) -> None: ...


class ExecCli:
    """Each command is the `predgate` executable, started afresh."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def run(self, *argv: str) -> CliResult:
        """Run the executable and wait for it."""
        done = subprocess.run(
            [PREDGATE, *argv],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT_SECONDS,
            check=False,
        )
        return CliResult(tuple(argv), done.returncode, done.stdout, done.stderr)

    def close(self) -> None:
        """Nothing stays running between commands."""


class CliHost:
    """Each command runs in a process forked from a host that has imported the CLI."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.propagation.deployment"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                # Its own process group, so a hung command can be killed with the host.
                start_new_session=True,
            )
        self.log_path = log_path

    def run(self, *argv: str) -> CliResult:
        """Send the command to the host and wait for its result."""
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(json.dumps({"argv": list(argv)}) + "\n")
        self.process.stdin.flush()
        # One reply line per command, so nothing is left in the reader's buffer to miss.
        ready, _, _ = select.select([self.process.stdout], [], [], CLI_TIMEOUT_SECONDS)
        line = self.process.stdout.readline() if ready else ""
        if not line:
            raise AssertionError(
                f"CLI host gave no result for predgate {' '.join(argv)}:\n{_tail(self.log_path)}"
            )
        reply = json.loads(line)
        return CliResult(tuple(argv), reply["returncode"], reply["stdout"], reply["stderr"])

    def close(self) -> None:
        """End of input ends the host; kill it (and any command) if it lingers."""
        if self.process.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _kill_group(self.process)
        if self.process.stdout is not None:
            self.process.stdout.close()


# What the commands a deployment runs (keys, clients, tenants, audit) import only when they
# run: imported by the host once, so a forked command takes ~0.1 s instead of ~1 s. The model
# stack stays out (no command here trains or loads a model). A name that moved is skipped.
HOST_PRELOADS = (
    "gateway.cli.context",
    "gateway.cli.audit",
    "gateway.cli.clients",
    "gateway.cli.keys",
    "gateway.cli.tenants",
    "gateway.presenters",
    "config",
    "db.engine",
    "db.migrations",
    "audit.acts",
    "audit.recorder",
    "audit.verify",
    "models.artifacts",
    "sqlalchemy.dialects.postgresql.psycopg",
    "psycopg",
)


def _serve_cli_host() -> None:
    """Run `predgate` commands read as JSON lines, each in a child forked from here."""
    # The console script's entry point, imported once: the children start with it loaded.
    from gateway.cli import main

    for name in HOST_PRELOADS:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    for line in sys.stdin:
        argv = json.loads(line)["argv"]
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            sys.stdout.flush()  # nothing buffered here may leak into the child's output
            pid = os.fork()
            if pid == 0:
                _run_cli_child(main, argv, out.fileno(), err.fileno())
            _, status = os.waitpid(pid, 0)
            out.seek(0)
            err.seek(0)
            reply = {
                "returncode": os.waitstatus_to_exitcode(status),
                "stdout": out.read().decode(errors="replace"),
                "stderr": err.read().decode(errors="replace"),
            }
        sys.stdout.write(json.dumps(reply) + "\n")
        sys.stdout.flush()


def _run_cli_child(main: Callable[[], None], argv: list[str], out: int, err: int) -> NoReturn:
    """Be `predgate ARGV...`: its output to the given files, its exit status as ours."""
    code = 70
    try:
        os.dup2(out, 1)
        os.dup2(err, 2)
        sys.argv = ["predgate", *argv]
        try:
            main()
            code = 0
        except SystemExit as exit_:
            if isinstance(exit_.code, int) or exit_.code is None:
                code = exit_.code or 0
            else:
                print(exit_.code, file=sys.stderr)
                code = 1
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)  # never the host's exit handlers


def service_urls() -> tuple[str, str]:
    """The test PostgreSQL and Redis URLs; the test is skipped without them (CI sets both)."""
    database_url = os.environ.get("PREDGATE_TEST_DATABASE_URL")
    if not database_url:
        pytest.skip("PREDGATE_TEST_DATABASE_URL is not set: replicas share PostgreSQL")
    redis_url = os.environ.get("PREDGATE_TEST_REDIS_URL")
    if not redis_url:
        pytest.skip("PREDGATE_TEST_REDIS_URL is not set: several workers need Redis")
    return database_url, redis_url


# --- the gateways ------------------------------------------------------------------------


class Gateway:
    """One `predgate serve` replica: a gunicorn master and its workers."""

    def __init__(self, name: str, env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._terminated = False
        self.start(env)

    def start(self, env: dict[str, str]) -> None:
        """Start `predgate serve` on this replica's port (again, after it was killed)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    PREDGATE,
                    "serve",
                    "--port",
                    str(self.port),
                    "--workers",
                    str(WORKERS),
                    "--threads",
                    str(THREADS),
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # workers die with it if it must be killed
            )

    def worker_pids(self) -> frozenset[int]:
        """The master's children as the kernel lists them now: its workers."""
        path = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        try:
            return frozenset(int(pid) for pid in path.read_text().split())
        except OSError:
            return frozenset()

    def wait_ready(self, deadline: float) -> None:
        """Until /healthz answers 200 and every worker has been forked."""
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"gateway {self.name} exited:\n{_tail(self.log_path)}")
            with contextlib.suppress(requests.RequestException):
                healthy = requests.get(f"{self.base}/healthz", timeout=2).status_code == 200
                if healthy and len(self.worker_pids()) == WORKERS:
                    return
            time.sleep(POLL_SECONDS)
        raise AssertionError(f"gateway {self.name} not ready:\n{_tail(self.log_path)}")

    def terminate(self) -> None:
        """Ask for a graceful stop (SIGTERM) without waiting for it."""
        # Once only: gunicorn's master starts its graceful wait over on every SIGTERM.
        if self.process.poll() is None and not self._terminated:
            self._terminated = True
            self.process.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        """SIGTERM (graceful), SIGKILL to the whole group if it lingers."""
        self.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _kill_group(self.process)


def _stop_gateways(gateways: list[Gateway]) -> None:
    """Stop every gateway: all are asked at once, as each takes seconds to drain."""
    for gateway in gateways:
        gateway.terminate()
    for gateway in gateways:
        gateway.stop()


# --- preparing subjects ------------------------------------------------------------------


class AdminApi:
    """The /admin/v1 API of the gateways, as an admin client: prepares subjects quickly."""

    def __init__(self, bases: list[str], client_id: str, client_secret: str) -> None:
        self.bases = bases
        self.client_id = client_id
        self.client_secret = client_secret
        self._calls = itertools.count()
        self._token = ""
        self._token_until = 0.0

    def _authorization(self) -> dict[str, str]:
        if time.monotonic() > self._token_until:
            answer = issue_token(self.bases[0], self.client_id, self.client_secret)
            self._token = answer["access_token"]
            self._token_until = time.monotonic() + int(answer["expires_in"]) / 2
        return {"Authorization": f"Bearer {self._token}"}

    def call(self, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One admin request that must succeed; its JSON answer."""
        base = self.bases[next(self._calls) % len(self.bases)]
        answer = requests.request(
            method,
            f"{base}/admin/v1{path}",
            json=body,
            headers=self._authorization(),
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
        if answer.status_code not in (200, 201):
            raise AssertionError(f"{method} {path}: {answer.status_code} {answer.text}")
        result: dict[str, Any] = answer.json()
        return result

    def create_tenant(self, name: str, model: str) -> None:
        """A tenant served `model`."""
        self.call("POST", "/tenants", {"name": name})
        self.call("PUT", f"/tenants/{name}/model", {"model": model})

    def issue_key(self, tenant: str) -> tuple[str, str]:
        """(key id, API key) of a fresh key of `tenant`."""
        issued = self.call("POST", "/keys", {"tenant": tenant})
        return str(issued["key_id"]), str(issued["api_key"])

    def create_partner(self, tenant: str) -> tuple[str, str]:
        """(client id, secret) of a fresh partner client of `tenant`."""
        issued = self.call("POST", "/clients", {"role": "partner", "tenant": tenant})
        return str(issued["client_id"]), str(issued["client_secret"])


def issue_token(base: str, client_id: str, client_secret: str) -> dict[str, Any]:
    """POST /oauth/token with the client credentials grant; the token response."""
    answer = requests.post(
        f"{base}/oauth/token",
        auth=(client_id, client_secret),
        data={"grant_type": "client_credentials"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    if answer.status_code != 200:
        raise AssertionError(f"token for {client_id}: {answer.status_code} {answer.text}")
    result: dict[str, Any] = answer.json()
    return result


@dataclass(frozen=True)
class Subject:
    """What one trial changes: a key of its own tenant, or a partner client."""

    kind: str
    tenant: str
    principal_id: str  # key id or client id: how the audit log names the caller
    secret: str  # the API key, or the client secret


# --- the deployment ----------------------------------------------------------------------


@dataclass
class Deployment:
    """Two gateways, a CLI, the schema's audit log, and a pool of prepared subjects."""

    env: dict[str, str]
    gateways: list[Gateway]
    cli: Cli
    engine: Engine
    admin: AdminApi
    run_id: str
    pool: dict[str, list[Subject]] = field(default_factory=dict)
    _made: Iterator[int] = field(default_factory=itertools.count)

    @property
    def partner_tenant(self) -> str:
        """The tenant of every partner client (client trials never change the tenant)."""
        return f"p{self.run_id}-partners"

    def worker_pids(self) -> frozenset[int]:
        """Every worker of every gateway."""
        return frozenset().union(*(gateway.worker_pids() for gateway in self.gateways))

    def make_subject(self, kind: str) -> Subject:
        """A fresh subject of `kind`: its own key and tenant, or its own partner client."""
        number = next(self._made)
        if kind in CLIENT_KINDS:
            client_id, secret = self.admin.create_partner(self.partner_tenant)
            return Subject(kind, self.partner_tenant, client_id, secret)
        tenant = f"p{self.run_id}-{kind.replace('_', '-')}-{number}"
        self.admin.create_tenant(tenant, BEFORE_MODEL)
        key_id, api_key = self.admin.issue_key(tenant)
        return Subject(kind, tenant, key_id, api_key)

    def prepare(self, kinds: tuple[str, ...], count: int) -> None:
        """`count` subjects of each kind, made before any trial, then a settling pause.

        Making a subject is itself a change; were a cache to flush on it, that flush must
        have landed before a trial starts, or it could pass for the trial's own propagation.
        Nothing shows when it has landed, so wait as long as a trial watches.
        """
        wanted = [kind for kind in kinds for _ in range(count)]
        # A few at a time: each admin call waits for its audit commit more than for the CPU.
        with ThreadPoolExecutor(max_workers=PREPARE_CONCURRENCY) as pool:
            for subject in pool.map(self.make_subject, wanted):
                self.pool.setdefault(subject.kind, []).append(subject)
        time.sleep(OBSERVE_SECONDS)

    def take(self, kind: str) -> Subject:
        """A prepared subject of `kind`; one more is made (and settled) when none is left."""
        if not self.pool.get(kind):
            self.prepare((kind,), 1)
        return self.pool[kind].pop(0)

    def pids_of(self, request_ids: list[str]) -> dict[str, int]:
        """The worker pid that answered each request, from the audit log."""
        if not request_ids:
            return {}
        query = text(
            "SELECT request_id, process_id FROM audit_records WHERE request_id IN :ids"
        ).bindparams(bindparam("ids", expanding=True))
        found: dict[str, int] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(request_ids), 1000):
                rows = connection.execute(query, {"ids": request_ids[start : start + 1000]})
                found.update({str(rid): int(pid) for rid, pid in rows})
        return found

    def recorded_at(self, kind: str, t0: float, t1: float) -> float:
        """When the audit record of the change made between t0 and t1 was stamped."""
        query = text(
            "SELECT ts FROM audit_records WHERE event_type = :type AND outcome = 'success' "
            "AND ts BETWEEN :since AND :until ORDER BY seq DESC LIMIT 1"
        )
        # A millisecond of slack each side for the float <-> microsecond conversions.
        window = {
            "type": CHANGE_EVENTS[kind],
            "since": datetime.fromtimestamp(t0 - 0.001, UTC),
            "until": datetime.fromtimestamp(t1 + 0.001, UTC),
        }
        with self.engine.connect() as connection:
            stamped = connection.execute(query, window).scalar_one_or_none()
        if stamped is None:
            raise AssertionError(f"no {CHANGE_EVENTS[kind]} audit record between T0 and T1")
        return float(stamped.timestamp())

    def pids_served(self, principal_id: str) -> frozenset[int]:
        """Workers whose audit records show a successful answer to `principal_id`."""
        query = text(
            "SELECT DISTINCT process_id FROM audit_records "
            "WHERE principal_id = :principal AND http_status = 200"
        )
        with self.engine.connect() as connection:
            return frozenset(
                int(pid) for (pid,) in connection.execute(query, {"principal": principal_id})
            )


def with_search_path(url: str, schema: str) -> str:
    """The database URL with its connections' search_path set to `schema`."""
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}options={quote(f'-csearch_path={schema}')}"


def gateway_env(
    data_dir: Path, database_url: str, redis_url: str, redis_prefix: str
) -> dict[str, str]:
    """The environment of every predgate process: ours only, no inherited PREDGATE_*."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("PREDGATE_")}
    env.update(
        PREDGATE_DATABASE_URL=database_url,
        PREDGATE_REDIS_URL=redis_url,
        PREDGATE_RATELIMIT_KEY_PREFIX=redis_prefix,
        PREDGATE_DATA_DIR=str(data_dir),
        PREDGATE_SECRET_KEY=secrets.token_hex(32),
        PREDGATE_LOG_LEVEL="WARNING",
        PREDGATE_DEFAULT_RATE_LIMIT="1000000/minute",
        # Revoked and suspended credentials are counted per address (30/minute by default):
        # the hammering would be answered 429 instead of the refusal being measured.
        PREDGATE_UNAUTHENTICATED_RATE_LIMIT="1000000/minute",
        PREDGATE_AUDIT_HEALTH_CHECKS="false",
    )
    return env


@contextlib.contextmanager
def deployment(
    database_url: str, redis_url: str, data_dir: Path, *, exec_cli: bool = False
) -> Iterator[Deployment]:
    """A schema, a Redis prefix, the demo, a CLI and two gateways; all removed afterwards."""
    run_id = uuid.uuid4().hex[:10]
    schema = f"predgate_propagation_{run_id}"
    redis_prefix = f"propagation-{run_id}"
    with contextlib.ExitStack() as cleanup:
        admin_engine = create_engine(database_url)
        cleanup.callback(admin_engine.dispose)
        with admin_engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        cleanup.callback(_drop_schema, admin_engine, schema)
        cleanup.callback(_delete_redis_keys, redis_url, redis_prefix)
        url = with_search_path(database_url, schema)
        env = gateway_env(data_dir, url, redis_url, redis_prefix)
        # Started first: the host's imports overlap the demo's training.
        cli: Cli = ExecCli(env) if exec_cli else CliHost(env, data_dir / "cli-host.log")
        cleanup.callback(cli.close)
        # Migrations, trained house-price and iris, acme and globex: `predgate demo`, run here,
        # where the CLI and scikit-learn are imported already, unless every command is to be
        # the executable.
        if exec_cli:
            cli.run("demo", "--json").check()
        else:
            demo = run_predgate(env, "demo", "--json")
            CliResult(("demo", "--json"), demo.exit_code, demo.stdout, demo.stderr).check()
        gateways: list[Gateway] = []
        cleanup.callback(_stop_gateways, gateways)
        for index in range(GATEWAYS):
            gateways.append(Gateway(f"g{index}", env, data_dir / f"gateway-{index}.log"))
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        for gateway in gateways:
            gateway.wait_ready(deadline)
        engine = create_engine(url, pool_size=2)
        cleanup.callback(engine.dispose)
        issued = json.loads(
            cli.run("clients", "create", "--role", "admin", "--json").check().stdout
        )
        admin = AdminApi(
            [gateway.base for gateway in gateways], issued["client_id"], issued["client_secret"]
        )
        found = Deployment(env, gateways, cli, engine, admin, run_id)
        admin.create_tenant(found.partner_tenant, BEFORE_MODEL)
        yield found


def _drop_schema(engine: Engine, schema: str) -> None:
    with engine.begin() as connection:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def _delete_redis_keys(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        for name in client.scan_iter(match=f"*{prefix}*", count=1000):
            client.delete(name)
    finally:
        client.close()


# --- one trial ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Observation:
    """One request of the hammering and what came back."""

    gateway: int
    started: float  # time.time() before sending
    ended: float
    status: int  # 0: no HTTP answer at all
    request_id: str | None
    body: str
    answer: str  # "before", "after" or "unexpected"


def classify(kind: str, status: int, request_id: str | None, body: str) -> str:
    """Whether an answer is the one from before the change, from after it, or neither."""
    if request_id is None:
        return "unexpected"
    try:
        document = json.loads(body)
    except ValueError:
        return "unexpected"
    if not isinstance(document, dict):
        return "unexpected"
    if status == 200 and document.get("name") == BEFORE_MODEL:
        return "before"
    after_status, after_code, after_model = AFTER[kind]
    if status != after_status:
        return "unexpected"
    if after_model is not None:
        return "after" if document.get("name") == after_model else "unexpected"
    return "after" if document.get("code") == after_code else "unexpected"


class Hammer:
    """Threads sending GET /v1/model with one credential to every gateway, each on a new
    connection (Connection: close) so that every worker keeps accepting some of them."""

    def __init__(self, gateways: list[Gateway], kind: str, credential: str) -> None:
        self.kind = kind
        self.headers = {"Authorization": f"Bearer {credential}", "Connection": "close"}
        self.observations: list[Observation] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(index, gateway.base), daemon=True)
            for index, gateway in enumerate(gateways)
            for _ in range(HAMMERS_PER_GATEWAY)
        ]

    def __enter__(self) -> Hammer:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> list[Observation]:
        """Stop sending, wait for the requests in flight; every observation so far."""
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=REQUEST_TIMEOUT_SECONDS + 5)
        return self.snapshot()

    def snapshot(self) -> list[Observation]:
        """The observations recorded so far."""
        with self._lock:
            return list(self.observations)

    def _run(self, index: int, base: str) -> None:
        with requests.Session() as http:
            while not self._stop.is_set():
                started = time.time()
                try:
                    response = http.get(
                        f"{base}/v1/model", headers=self.headers, timeout=REQUEST_TIMEOUT_SECONDS
                    )
                    status, body = response.status_code, response.text
                    request_id = response.headers.get("X-Request-ID")
                except Exception as exc:  # recorded and reported; a thread must not die silently
                    status, body, request_id = 0, repr(exc), None
                observation = Observation(
                    index,
                    started,
                    time.time(),
                    status,
                    request_id,
                    body,
                    classify(self.kind, status, request_id, body),
                )
                with self._lock:
                    self.observations.append(observation)


@dataclass(frozen=True)
class TrialResult:
    """One counted trial. Its delays, in seconds, are the latest start of an answer from
    before the change minus a reference time, 0 if none; the change committed at some C with
    T0 <= recorded <= C <= T1, so the delay from T1 is a lower bound on the real one and the
    delays from the change's audit record and from T0 are upper bounds."""

    kind: str
    subject: str
    delay: float  # from T1, when the command returned (answers started after T1)
    delay_from_record: float  # from the change's audit record, stamped before it committed
    delay_from_t0: float  # from T0, when the command started
    change_seconds: float  # T1 - T0
    requests: int
    after_t1_by_pid: dict[int, int]  # answers started after T1, per worker pid
    stale_by_pid: dict[int, float]  # per worker: latest answer from before, minus the record
    never_changed: tuple[int, ...]  # workers with answers after T1 but none from after


@dataclass(frozen=True)
class Retry:
    """A trial that proved nothing about some worker, and why."""

    reason: str


def _describe(observations: list[Observation]) -> str:
    lines = []
    for seen in observations[:SHOW]:
        lines.append(
            f"  gateway g{seen.gateway} started {seen.started:.3f} "
            f"status {seen.status} request {seen.request_id}: {seen.body[:200]}"
        )
    return "\n".join(lines)


def _change(deployment: Deployment, subject: Subject, credential: str, trial: int) -> None:
    """Make the trial's change in another process: the CLI, or a gateway for a token."""
    if subject.kind == "token_revoke":
        answer = requests.post(
            f"{deployment.gateways[trial % GATEWAYS].base}/oauth/revoke",
            auth=(subject.principal_id, subject.secret),
            data={"token": credential},
            timeout=REQUEST_TIMEOUT_SECONDS,
        )
        if answer.status_code != 200:
            raise AssertionError(f"/oauth/revoke answered {answer.status_code} {answer.text}")
        return
    argv = {
        "key_revoke": ("keys", "revoke", subject.principal_id),
        "client_revoke": ("clients", "revoke", subject.principal_id),
        "tenant_suspend": ("tenants", "suspend", subject.tenant),
        "reassign": ("tenants", "assign", subject.tenant, AFTER_MODEL),
    }[subject.kind]
    deployment.cli.run(*argv).check()


def run_trial(deployment: Deployment, subject: Subject, trial: int) -> TrialResult | Retry:
    """Warm every worker with the subject, change it, and watch until OBSERVE_SECONDS after."""
    credential = subject.secret
    if subject.kind in CLIENT_KINDS:
        base = deployment.gateways[trial % GATEWAYS].base
        credential = issue_token(base, subject.principal_id, subject.secret)["access_token"]
    workers = deployment.worker_pids()
    with Hammer(deployment.gateways, subject.kind, credential) as hammer:
        _wait_until_warm(deployment, hammer, subject, workers)
        t0 = time.time()
        _change(deployment, subject, credential, trial)
        t1 = time.time()
        # A fixed observation window, not a wait for a condition: the answers are the data.
        time.sleep(max(0.0, t1 + OBSERVE_SECONDS - time.time()))
        observations = hammer.stop()
    if deployment.worker_pids() != workers:
        return Retry(f"workers changed during the trial: {sorted(workers)}")
    unexpected = [seen for seen in observations if seen.answer == "unexpected"]
    if unexpected:
        raise AssertionError(
            f"{subject.kind} trial {trial}: {len(unexpected)} unexpected answers:\n"
            + _describe(unexpected)
        )
    premature = [seen for seen in observations if seen.answer == "after" and seen.ended < t0]
    if premature:
        raise AssertionError(
            f"{subject.kind} trial {trial}: answers from after the change before it was made:\n"
            + _describe(premature)
        )
    recorded = deployment.recorded_at(subject.kind, t0, t1)
    return _evaluate(deployment, subject, observations, workers, (t0, recorded, t1))


def _wait_until_warm(
    deployment: Deployment, hammer: Hammer, subject: Subject, workers: frozenset[int]
) -> None:
    """Until the audit log shows every worker answered the subject successfully."""
    deadline = time.monotonic() + WARM_TIMEOUT_SECONDS
    while True:
        seen = hammer.snapshot()
        wrong = [answer for answer in seen if answer.answer != "before"]
        if wrong:
            raise AssertionError(
                f"{subject.kind}: answers before the change that are not the expected "
                f"200 {BEFORE_MODEL}:\n" + _describe(wrong)
            )
        served = deployment.pids_served(subject.principal_id)
        if workers <= served:
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{subject.kind}: workers {sorted(workers - served)} served none of "
                f"{len(seen)} requests of {subject.principal_id} in {WARM_TIMEOUT_SECONDS:.0f} s"
            )
        time.sleep(POLL_SECONDS)


def _evaluate(
    deployment: Deployment,
    subject: Subject,
    observations: list[Observation],
    workers: frozenset[int],
    times: tuple[float, float, float],
) -> TrialResult | Retry:
    """Delays from the client's view, and which worker gave each answer from the audit log."""
    t0, recorded, t1 = times
    since_t0 = [seen for seen in observations if seen.started >= t0]
    pids = deployment.pids_of([seen.request_id for seen in since_t0 if seen.request_id])
    after_t1_by_pid = {pid: 0 for pid in workers}
    changed: set[int] = set()
    stale_by_pid: dict[int, float] = {}
    for seen in since_t0:
        pid = pids.get(seen.request_id or "")
        if pid is None:
            continue  # not in the audit log: which worker answered is unknown
        if seen.started > t1:
            after_t1_by_pid[pid] = after_t1_by_pid.get(pid, 0) + 1
            if seen.answer == "after":
                changed.add(pid)
        if seen.answer == "before" and seen.started >= recorded:
            stale_by_pid[pid] = max(stale_by_pid.get(pid, 0.0), seen.started - recorded)
    silent = sorted(pid for pid in workers if after_t1_by_pid[pid] == 0)
    if silent:
        return Retry(f"workers {silent} answered nothing after the change")
    never_changed = tuple(sorted(pid for pid in workers if pid not in changed))

    def delay_from(reference: float) -> float:
        stale = [seen.started for seen in since_t0 if seen.answer == "before"]
        latest = max((started for started in stale if started >= reference), default=reference)
        if never_changed:
            # Answered after the change but never as changed: not within the whole window.
            latest = max(latest, t1 + OBSERVE_SECONDS)
        return latest - reference

    return TrialResult(
        kind=subject.kind,
        subject=subject.principal_id,
        delay=delay_from(t1),
        delay_from_record=delay_from(recorded),
        delay_from_t0=delay_from(t0),
        change_seconds=t1 - t0,
        requests=len(observations),
        after_t1_by_pid=after_t1_by_pid,
        stale_by_pid=stale_by_pid,
        never_changed=never_changed,
    )


# --- many trials, and their table ----------------------------------------------------------


@dataclass(frozen=True)
class KindReport:
    """Every counted trial of one kind, and the reasons of the retried ones."""

    kind: str
    trials: list[TrialResult]
    retries: list[str]

    @property
    def max_delay(self) -> float:
        """The largest delay from T1 of any trial, in seconds (a lower bound)."""
        return max(trial.delay for trial in self.trials)

    @property
    def max_delay_from_record(self) -> float:
        """The largest delay from the change's audit record, in seconds (an upper bound)."""
        return max(trial.delay_from_record for trial in self.trials)

    def worst(self) -> TrialResult:
        """The trial with the largest upper bound."""
        return max(self.trials, key=lambda trial: trial.delay_from_record)


def run_kind(
    deployment: Deployment,
    kind: str,
    trials: int,
    progress: Callable[[TrialResult | Retry], None] | None = None,
) -> KindReport:
    """`trials` counted trials of `kind`, back to back, each on a fresh subject."""
    results: list[TrialResult] = []
    retries: list[str] = []
    while len(results) < trials:
        outcome = run_trial(deployment, deployment.take(kind), len(results) + len(retries))
        if progress is not None:
            progress(outcome)
        if isinstance(outcome, Retry):
            retries.append(outcome.reason)
            if len(retries) > MAX_RETRIES:
                raise AssertionError(f"{kind}: too many trials proved nothing: {retries}")
        else:
            results.append(outcome)
    return KindReport(kind, results, retries)


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


HEADERS = (
    "kind",
    "trials",
    "retried",
    "max ms",
    "p50 ms",
    "p90 ms",
    "rec max",
    "rec p50",
    "rec p90",
    "T0 max",
    "cmd p50",
    "req/trial",
)
LEGEND = (
    "max/p50/p90: delay from T1, when the change's command returned (a lower bound); "
    "rec: from the change's audit record, stamped before it committed (an upper bound); "
    "T0: from when the command started; cmd: T1 - T0; all in ms"
)


def table(reports: list[KindReport]) -> str:
    """Delay distribution per kind, in milliseconds, and a legend."""
    rows: list[tuple[str, ...]] = [HEADERS]
    for report in reports:
        delays = [trial.delay * 1000 for trial in report.trials]
        recorded = [trial.delay_from_record * 1000 for trial in report.trials]
        rows.append(
            (
                report.kind,
                str(len(report.trials)),
                str(len(report.retries)),
                *(f"{value:.0f}" for value in _spread(delays)),
                *(f"{value:.0f}" for value in _spread(recorded)),
                f"{max(trial.delay_from_t0 for trial in report.trials) * 1000:.0f}",
                f"{statistics.median(t.change_seconds for t in report.trials) * 1000:.0f}",
                f"{statistics.median(t.requests for t in report.trials):.0f}",
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(HEADERS))]
    lines = [
        "  ".join(
            cell.rjust(width) if column else cell.ljust(width)
            for column, (cell, width) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    return "\n".join([*lines, LEGEND])


def _spread(values: list[float]) -> tuple[float, float, float]:
    return max(values), percentile(values, 0.5), percentile(values, 0.9)


def explain(report: KindReport) -> str:
    """The worst trial of a kind: which workers answered as before the change, how late."""
    worst = report.worst()
    stale = ", ".join(
        f"pid {pid}: {delay * 1000:.0f} ms" for pid, delay in sorted(worst.stale_by_pid.items())
    )
    return (
        f"{report.kind}: worst trial ({worst.subject}) delay {worst.delay * 1000:.0f} ms from "
        f"T1, {worst.delay_from_record * 1000:.0f} ms from the change's record; "
        f"per worker, latest answer from before the change after its record: {stale or 'none'}; "
        f"workers never seen changed: {list(worst.never_changed) or 'none'}; "
        f"answers after T1 per worker: {worst.after_t1_by_pid}"
    )


def progress_printer(stream: IO[str]) -> Callable[[TrialResult | Retry], None]:
    """A progress callback writing one line per trial."""

    def log(outcome: TrialResult | Retry) -> None:
        if isinstance(outcome, Retry):
            stream.write(f"  retried: {outcome.reason}\n")
        else:
            stream.write(
                f"  {outcome.kind} {outcome.subject}: delay {outcome.delay * 1000:.0f} ms from T1, "
                f"{outcome.delay_from_record * 1000:.0f} ms from the record, "
                f"{outcome.delay_from_t0 * 1000:.0f} ms from T0; {outcome.requests} requests\n"
            )
        stream.flush()

    return log


if __name__ == "__main__":
    _serve_cli_host()
