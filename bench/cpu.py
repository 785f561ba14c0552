"""CPU time consumed during a measurement: a server's process tree, PostgreSQL, Redis."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_seconds(pid: int) -> float | None:
    """utime + stime of a process (all its threads) in seconds; None once it is gone."""
    fields = _stat(pid)
    if fields is None:
        return None
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_started(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (tells a reused pid apart)."""
    fields = _stat(pid)
    return None if fields is None else int(fields[19])


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants (gunicorn master + workers)."""
    tree = [pid]
    for parent in tree:  # grows while iterating: a breadth-first walk
        for task in (PROC / str(parent) / "task").glob("*"):
            try:
                tree.extend(int(child) for child in (task / "children").read_text().split())
            except (FileNotFoundError, ProcessLookupError):
                continue
    return tree


def tree_seconds(pids: list[int]) -> dict[int, float]:
    """CPU seconds per pid, leaving out pids that have exited."""
    seconds = {pid: process_seconds(pid) for pid in pids}
    return {pid: value for pid, value in seconds.items() if value is not None}


def common_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two samples by the processes present in both."""
    return sum(after[pid] - before[pid] for pid in before.keys() & after.keys())


@dataclass(frozen=True)
class PostgresCpu:
    """Samples the local PostgreSQL server's processes that may work for `database`.

    Backends are per connection and persist while the gateway's pool holds them, so a process
    present before and after a run carries that run's CPU. Client backends of other databases
    (another user's tests on the same server) are left out; the auxiliary processes (WAL
    writer, checkpointer, ...) serve every database and are counted.
    """

    monitor_url: str
    database: str

    def sample(self) -> dict[int, float]:
        """CPU seconds per PostgreSQL process, other databases' client backends excluded."""
        foreign = self._foreign_backends()
        return tree_seconds([pid for pid in _postgres_pids() if pid not in foreign])

    def backends(self) -> int:
        """How many client backends `database` has now (the gateway's pooled connections)."""
        with psycopg.connect(self.monitor_url, autocommit=True) as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (self.database,)
            ).fetchone()
        return int(row[0]) if row else 0

    def _foreign_backends(self) -> set[int]:
        # The monitor connection itself lives in the maintenance database, so it is foreign too.
        with psycopg.connect(self.monitor_url, autocommit=True) as connection:
            rows = connection.execute(
                "SELECT pid FROM pg_stat_activity "
                "WHERE backend_type = 'client backend' AND datname IS DISTINCT FROM %s",
                (self.database,),
            ).fetchall()
        return {int(row[0]) for row in rows}


def machine_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot, summed over its cores."""
    fields = (PROC / "stat").read_text().splitlines()[0].split()[1:]
    # user nice system idle iowait irq softirq steal ...: everything but idle and iowait.
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def redis_seconds(client: redis.Redis) -> float:
    """The Redis server's own CPU seconds so far (INFO cpu: user + sys)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _postgres_pids() -> list[int]:
    pids = []
    for entry in PROC.iterdir():
        if entry.name.isdigit() and _comm(entry).startswith("postgres"):
            pids.append(int(entry.name))
    return pids


def _comm(entry: Path) -> str:
    try:
        return (entry / "comm").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name, or None once the process is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name may hold spaces and parentheses: fields are counted after the last ')'.
    return stat[stat.rindex(")") + 2 :].split()
