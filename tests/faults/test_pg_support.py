"""The private PostgreSQL harness itself: start, SIGKILL and restart with committed data intact,
freeze and thaw, stop; and no process of it is left behind."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import psycopg
import pytest

from tests.pg_support import PostgresServer


def _family(server: PostgresServer) -> list[int]:
    """The postmaster and its children, as /proc shows them now."""
    assert server.pid is not None
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    return [server.pid, *map(int, children)]


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
def test_kill_restart_keeps_committed_data(postgres: PostgresServer) -> None:
    assert postgres.url.startswith("postgresql+psycopg://postgres@127.0.0.1:")
    assert postgres.url.endswith(f":{postgres.port}/test")
    with psycopg.connect(postgres.dsn, autocommit=True) as connection:
        settings = dict(
            connection.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('fsync', 'listen_addresses', 'max_connections', 'unix_socket_directories')"
            ).fetchall()
        )
        connection.execute("CREATE TABLE facts (n int PRIMARY KEY)")
        connection.execute("INSERT INTO facts VALUES (1)")
    assert settings["fsync"] == "on"
    assert settings["listen_addresses"] == "127.0.0.1"
    assert settings["max_connections"] == "100"
    assert settings["unix_socket_directories"] == str(postgres.data_dir.parent)

    # A transaction in flight when the server dies must vanish; the committed row must not.
    open_transaction = psycopg.connect(postgres.dsn)
    open_transaction.execute("INSERT INTO facts VALUES (2)")
    processes = _family(postgres)
    assert len(processes) >= 5  # postmaster, checkpointer, walwriter, ..., our backend

    postgres.kill()
    assert not any(_alive(pid) for pid in processes)
    assert (postgres.data_dir / "postmaster.pid").exists()  # left behind, as after a crash
    with pytest.raises(psycopg.OperationalError):
        open_transaction.execute("SELECT 1")
    open_transaction.close()

    started = time.monotonic()
    postgres.start()
    print(f"\nrestart after SIGKILL: {time.monotonic() - started:.2f}s")
    with psycopg.connect(postgres.dsn) as connection:
        assert connection.execute("SELECT n FROM facts ORDER BY n").fetchall() == [(1,)]
    assert "database system was interrupted" in postgres.log_path.read_text()


@pytest.mark.slow
def test_frozen_server_does_not_answer_until_thawed(postgres: PostgresServer) -> None:
    connection = psycopg.connect(postgres.dsn, autocommit=True)
    try:
        postgres.freeze()
        assert set(postgres.frozen) == set(_family(postgres))
        answers: list[object] = []
        query = threading.Thread(
            target=lambda: answers.append(connection.execute("SELECT 42").fetchone()),
            daemon=True,
        )
        query.start()
        query.join(timeout=1.0)
        assert query.is_alive(), "a frozen server answered"
        # A new connection is accepted by the kernel (listen backlog) but never answered;
        # libpq's connect_timeout is at least 2 s.
        with pytest.raises(psycopg.OperationalError, match="timeout"):
            psycopg.connect(postgres.dsn, connect_timeout=2).close()

        postgres.thaw()
        query.join(timeout=5.0)
        assert answers == [(42,)]
        assert postgres.frozen == []
    finally:
        postgres.thaw()
        connection.close()


@pytest.mark.slow
def test_stop_removes_everything_and_is_idempotent() -> None:
    server = PostgresServer()
    server.start()
    root = server.data_dir.parent
    processes = _family(server)
    server.freeze()  # stop() thaws first, then shuts down fast
    server.stop()
    server.stop()
    assert not root.exists()
    assert not any(_alive(pid) for pid in processes)
    assert not server.running()
