"""`predgate audit verify` passes while predictions are being appended to the same chain: on a
private PostgreSQL (two workers, private Redis) and on the embedded SQLite default (one worker).
Bounded: the load runs while the two verifications do (a few seconds), 4 clients."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Callable

import pytest

from tests.faults.conftest import CLIENTS, Gateway, Load
from tests.pg_support import PostgresServer
from tests.ratelimit_support import RedisServer

VERIFICATIONS = 2
WARMUP = 0.5  # the chain is growing before the first verification starts
# A few seconds on a quiet machine (mostly imports); generous for a busy one, still bounded.
VERIFY_TIMEOUT = 60.0
TIMED_OUT = -9  # the exit code subprocess.run reports for the child it killed on timeout


@pytest.mark.slow
def test_verify_under_load_postgresql(
    postgres: PostgresServer, redis_server: RedisServer, deploy: Callable[..., Gateway]
) -> None:
    gateway = deploy(database_url=postgres.url, redis_url=redis_server.url, workers=2, threads=8)
    _verify_during_load("postgresql", gateway)


@pytest.mark.slow
def test_verify_under_load_sqlite(deploy: Callable[..., Gateway]) -> None:
    # One worker keeps its rate-limit counters in memory: no Redis needed.
    gateway = deploy(database_url=None, redis_url=None, workers=1, threads=8)
    _verify_during_load("sqlite", gateway)


def _verify_during_load(name: str, gateway: Gateway) -> None:
    """Run `predgate audit verify` VERIFICATIONS times while the load runs; each must pass."""
    load = Load(gateway.base, gateway.api_key)
    runs: list[tuple[subprocess.CompletedProcess[str], float, int]] = []
    load.start()
    try:
        load.wait_for_successes(CLIENTS, timeout=15)
        time.sleep(WARMUP)
        for _ in range(VERIFICATIONS):
            began = time.monotonic()
            answered_before = len(load.replies)
            try:
                result = gateway.cli("audit", "verify", timeout=VERIFY_TIMEOUT)
            except subprocess.TimeoutExpired as exc:
                result = subprocess.CompletedProcess(
                    exc.cmd, TIMED_OUT, _text(exc.stdout), f"timed out after {VERIFY_TIMEOUT:.0f} s"
                )
            # How many answers arrived while it ran: proof that it ran under load.
            runs.append((result, time.monotonic() - began, len(load.replies) - answered_before))
            if result.returncode == TIMED_OUT:
                break  # the test has failed; waiting out the others would only add minutes
    finally:
        load.stop()
    gateway.stop()

    statuses = dict(sorted(Counter(reply.status for reply in load.replies).items()))
    print(
        f"\n{name}: load={load.stopped_at - load.started_at:.1f}s responses={statuses} "
        f"lost={sum(load.lost.values())} verifications="
        + ", ".join(
            f"exit {result.returncode} in {seconds:.1f}s ({answers} answers meanwhile)"
            for result, seconds, answers in runs
        )
    )
    failed = [
        f"verification {number} exited {result.returncode}:\n"
        f"{result.stdout.strip()}\n{result.stderr.strip()}"
        for number, (result, _seconds, _answers) in enumerate(runs, 1)
        if result.returncode != 0
    ]
    assert not failed, f"{name}: `predgate audit verify` failed under load:\n" + "\n".join(failed)
    idle = [number for number, (_r, _s, answers) in enumerate(runs, 1) if answers == 0]
    assert not idle, f"{name}: no prediction was answered during verifications {idle}"


def _text(output: str | bytes | None) -> str:
    if isinstance(output, bytes):
        return output.decode(errors="replace")
    return output or ""
