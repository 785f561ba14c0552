"""A private PostgreSQL server for tests: its own cluster on a free loopback port, which a test
can SIGKILL and start again (crash recovery), freeze with SIGSTOP and thaw, and always removes.

Never touches the machine's own PostgreSQL: every process it signals is the postmaster it
started or a child of it, found through /proc.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import psycopg
import pytest

OS_USER = "postgres"  # PostgreSQL refuses to run as root
DATABASE = "test"
START_TIMEOUT = 20.0
STOP_TIMEOUT = 15.0
# Small, but a real server: commits wait for their WAL to be fsynced.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "shared_buffers": "'16MB'",
    "max_connections": "100",
    "fsync": "on",
    "synchronous_commit": "on",
    "full_page_writes": "on",
    "huge_pages": "off",
    # Crash recovery first fsyncs every file of the cluster one by one (~1000 files: 2-3 s on a
    # busy disk); one syncfs() of the filesystem is as durable and takes ~0.2 s.
    "recovery_init_sync_method": "syncfs",
    "logging_collector": "off",
    "log_line_prefix": "'%m [%p] '",
}


def pg_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/*/bin that holds initdb, pg_ctl and postgres."""
    candidates = [
        path
        for path in Path("/usr/lib/postgresql").glob("*/bin")
        if all((path / name).exists() for name in ("initdb", "pg_ctl", "postgres"))
    ]
    if not candidates:
        raise RuntimeError("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin")
    return max(candidates, key=lambda path: int(path.parent.name.split(".")[0]))


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _as_postgres() -> dict[str, Any]:
    """Popen arguments that run a command as the postgres OS user, without root's groups."""
    return {"user": OS_USER, "group": OS_USER, "extra_groups": []}


def _private_dir(prefix: str) -> Path:
    # Short path under /tmp: the Unix socket lives here and socket paths are limited to 107 bytes.
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    account = pwd.getpwnam(OS_USER)
    os.chown(path, account.pw_uid, account.pw_gid)
    return path


def _run_as_postgres(args: list[str], *, cwd: Path, stdin: str | None = None) -> str:
    result = subprocess.run(
        args,
        cwd=cwd,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        **_as_postgres(),
    )
    if result.returncode != 0 or "ERROR:" in result.stdout:
        raise RuntimeError(
            f"{' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result.stdout


# --- process inspection through /proc -----------------------------------------------------


def _state(pid: int) -> str | None:
    """The one-letter state of a process (R, S, T, Z...), None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may contain spaces: the state follows the last ')'.
    return stat.rsplit(")", 1)[1].split()[0]


def _gone(pid: int) -> bool:
    # A zombie holds no memory, socket or lock any more; only its parent can reap it.
    return _state(pid) in (None, "Z", "X")


def _children(pid: int) -> list[int]:
    """Direct children of a process (every thread's), from /proc."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            found.extend(int(child) for child in (task / "children").read_text().split())
    return found


def _descendants(pid: int) -> list[int]:
    """Children, grandchildren... of a process, parents before their children."""
    found: list[int] = []
    frontier = [pid]
    while frontier:
        children = [child for parent in frontier for child in _children(parent)]
        found.extend(children)
        frontier = children
    return found


def _signal(pid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting until {what}")
        time.sleep(0.01)


def _stopped(pid: int) -> bool:
    return _state(pid) in ("T", "t", None, "Z", "X")


# --- a cluster made once per session, copied for each server ------------------------------

_template_lock = threading.Lock()
_template: Path | None = None


def cluster_template() -> Path:
    """A data directory with database `test`, made by initdb once per test process."""
    global _template  # one template per process, made on first use
    with _template_lock:
        if _template is None:
            root = _private_dir("pgtemplate-")
            atexit.register(shutil.rmtree, root, True)
            data = root / "data"
            bin_dir = pg_bin_dir()
            _run_as_postgres(
                [
                    str(bin_dir / "initdb"),
                    "--pgdata",
                    str(data),
                    "--username",
                    OS_USER,
                    "--auth",
                    "trust",
                    "--encoding",
                    "UTF8",
                    "--locale",
                    "C",
                    "--no-instructions",
                ],
                cwd=root,
            )
            # Single-user mode creates the database without a port, a socket or a wait.
            _run_as_postgres(
                [str(bin_dir / "postgres"), "--single", "-D", str(data), "postgres"],
                cwd=root,
                stdin=f"CREATE DATABASE {DATABASE};\n",
            )
            _template = data
        return _template


# --- the server -----------------------------------------------------------------------------

_live: set[PostgresServer] = set()


class PostgresServer:
    """A private PostgreSQL cluster in a temporary directory, on 127.0.0.1 and a free port."""

    def __init__(self, template: Path | None = None) -> None:
        self.bin_dir = pg_bin_dir()
        self.template = template
        self.port = free_port()
        self.root: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen: list[int] = []
        self.kills = 0

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        if self.root is None:
            raise RuntimeError("the server was never started")
        return self.root / "data"

    @property
    def log_path(self) -> Path:
        """The server's log (stderr of every start)."""
        return self.data_dir.parent / "postgres.log"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of database `test`."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{DATABASE}"

    @property
    def dsn(self) -> str:
        """libpq connection string of database `test`, for psycopg."""
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={DATABASE}"

    @property
    def pid(self) -> int | None:
        """The postmaster's pid while it runs."""
        return self.process.pid if self.process is not None else None

    def running(self) -> bool:
        """Whether the postmaster process exists (frozen counts as running)."""
        return self.process is not None and self.process.poll() is None

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start (or, after kill(), restart with crash recovery) and wait until it accepts."""
        if self.running():
            raise RuntimeError("the server is already running")
        if self.root is None:
            self._create_cluster()
        _live.add(self)
        self._remove_stale_pid_file()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)],
                cwd=self.data_dir.parent,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Its own session: a Ctrl-C meant for pytest must not shut it down behind our back.
                start_new_session=True,
                **_as_postgres(),
            )
        try:
            self._wait_accepting(timeout)
        except BaseException:
            self.kill()
            raise

    def kill(self) -> None:
        """SIGKILL the postmaster and every child, and wait until all of them are gone."""
        if self.process is None:
            return
        postmaster = self.process.pid
        # Stopped first, the postmaster cannot fork a new backend between our listing its
        # children and killing them; SIGKILL works on stopped processes.
        _signal(postmaster, signal.SIGSTOP)
        _wait_until(lambda: _stopped(postmaster), 5, "the postmaster stopped")
        victims = [*_descendants(postmaster), postmaster]
        for pid in victims:
            _signal(pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        _wait_until(lambda: all(_gone(pid) for pid in victims), 10, "every process was gone")
        self.process = None
        self.frozen = []
        self.kills += 1

    def freeze(self) -> None:
        """SIGSTOP the postmaster and every child: connections stay open but nothing answers."""
        if not self.running() or self.process is None:
            raise RuntimeError("the server is not running")
        if self.frozen:
            raise RuntimeError("the server is already frozen")
        postmaster = self.process.pid
        # The postmaster first, so that no new backend appears after the listing below.
        _signal(postmaster, signal.SIGSTOP)
        _wait_until(lambda: _stopped(postmaster), 5, "the postmaster stopped")
        children = _descendants(postmaster)
        for pid in children:
            _signal(pid, signal.SIGSTOP)
        _wait_until(lambda: all(_stopped(pid) for pid in children), 5, "every child stopped")
        self.frozen = [postmaster, *children]

    def thaw(self) -> None:
        """SIGCONT exactly the processes freeze() stopped."""
        frozen, self.frozen = self.frozen, []
        for pid in frozen:
            _signal(pid, signal.SIGCONT)

    def stop(self) -> None:
        """Fast shutdown (kill if that fails), then remove the directory; safe to call twice."""
        try:
            if self.frozen:
                self.thaw()
            if self.running():
                try:
                    _run_as_postgres(
                        [
                            str(self.bin_dir / "pg_ctl"),
                            "stop",
                            "-D",
                            str(self.data_dir),
                            "-m",
                            "fast",
                            "-w",
                            "-t",
                            str(int(STOP_TIMEOUT)),
                        ],
                        cwd=self.data_dir.parent,
                    )
                    if self.process is not None:
                        self.process.wait(timeout=STOP_TIMEOUT)
                        self.process = None
                except (RuntimeError, subprocess.TimeoutExpired):
                    pass  # the kill below ends it
            self.kill()
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None
            _live.discard(self)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log, for failure messages."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except (OSError, RuntimeError):
            return "(no log)"

    def _create_cluster(self) -> None:
        self.root = _private_dir("pgtest-")
        template = self.template or cluster_template()
        # cp -a keeps the postgres owner and the 0700 mode PostgreSQL insists on.
        subprocess.run(["cp", "-a", str(template), str(self.data_dir)], check=True)
        settings = {
            **SERVER_SETTINGS,
            "port": str(self.port),
            "unix_socket_directories": f"'{self.root}'",
        }
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.write("\n# tests.pg_support\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def _remove_stale_pid_file(self) -> None:
        # After a SIGKILL the lock file stays. PostgreSQL ignores it when its pid is dead, but a
        # recycled pid (of any process of this user) would make it refuse to start.
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return
        pid = int(pid_file.read_text().split()[0])
        with contextlib.suppress(OSError):
            if not _gone(pid) and Path(f"/proc/{pid}/exe").resolve().name == "postgres":
                raise RuntimeError(f"a postmaster ({pid}) may still run on {self.data_dir}")
        pid_file.unlink()

    def _wait_accepting(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                # libpq rounds a connect_timeout below 2 s up to 2 s.
                with psycopg.connect(self.dsn, connect_timeout=2) as connection:
                    connection.execute("SELECT 1")
                return
            except psycopg.OperationalError as exc:
                # "the database system is starting up" while crash recovery replays the WAL.
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(
                        f"postgres exited ({self.process and self.process.returncode}):\n"
                        f"{self.log_tail()}"
                    ) from exc
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"postgres did not accept connections within {timeout:.0f} s:\n"
                        f"{self.log_tail()}"
                    ) from exc
                time.sleep(0.05)


@atexit.register
def _stop_leftovers() -> None:
    # A test process that dies between start() and its teardown leaves no server behind.
    for server in list(_live):
        with contextlib.suppress(Exception):
            server.stop()


def postgres_fixture(
    scope: Literal["session", "package", "module", "class", "function"] = "function",
) -> Any:
    """A pytest fixture yielding a started PostgresServer, stopped at teardown.

    In a conftest: `postgres = postgres_fixture()` (the attribute name is the fixture name).
    """

    @pytest.fixture(scope=scope)
    def fixture() -> Iterator[PostgresServer]:
        server = PostgresServer()
        try:
            server.start()
            yield server
        finally:
            server.stop()

    return fixture
