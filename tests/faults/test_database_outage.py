"""The database dies (SIGKILL) or hangs (SIGSTOP) under load. Every answer a client got is a
success or problem+json with a code, never a bare 500, and is audited exactly once with the
status the client saw; /healthz keeps answering; service resumes without restarting the gateway;
the chain still verifies. Bounded: ~10-14 s of load per test, 4 clients."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from tests.faults.conftest import (
    CLIENTS,
    Gateway,
    HealthProbe,
    Load,
    Reply,
    audit_rows,
    listed,
)
from tests.pg_support import PostgresServer
from tests.ratelimit_support import RedisServer

# Shorter than the freeze, so requests waiting on a hung database give up well before it thaws.
AUDIT_WAIT_SECONDS = "3"
WARMUP = 2.0  # load before the fault
KILLED_FOR = 4.0
FROZEN_FOR = 8.0
RECOVERY = 4.0  # load after the database is back
TAIL = 2.0  # the last seconds of load that must hold successes
PROBLEM_JSON = "application/problem+json"


@dataclass
class Timeline:
    """When the fault began and ended (time.monotonic()), and what it was."""

    fault_started: float = 0.0
    fault_ended: float = 0.0
    notes: list[str] = field(default_factory=list)


@pytest.mark.slow
def test_killed_database(
    postgres: PostgresServer, redis_server: RedisServer, deploy: Callable[..., Gateway]
) -> None:
    gateway = deploy(
        database_url=postgres.url,
        redis_url=redis_server.url,
        PREDGATE_AUDIT_WAIT_SECONDS=AUDIT_WAIT_SECONDS,
    )

    def kill_and_restart(timeline: Timeline) -> None:
        timeline.fault_started = time.monotonic()
        postgres.kill()
        time.sleep(KILLED_FOR)
        restarting = time.monotonic()
        postgres.start()  # crash recovery on the same data directory
        timeline.fault_ended = time.monotonic()
        timeline.notes.append(
            f"kills={postgres.kills} down={KILLED_FOR:.0f}s "
            f"restart={timeline.fault_ended - restarting:.2f}s"
        )

    _outage("killed database", gateway, postgres, kill_and_restart)


@pytest.mark.slow
def test_frozen_database(
    postgres: PostgresServer, redis_server: RedisServer, deploy: Callable[..., Gateway]
) -> None:
    gateway = deploy(
        database_url=postgres.url,
        redis_url=redis_server.url,
        PREDGATE_AUDIT_WAIT_SECONDS=AUDIT_WAIT_SECONDS,
    )

    def freeze_and_thaw(timeline: Timeline) -> None:
        timeline.fault_started = time.monotonic()
        postgres.freeze()
        frozen = len(postgres.frozen)
        try:
            time.sleep(FROZEN_FOR)
        finally:
            postgres.thaw()
            timeline.fault_ended = time.monotonic()
        timeline.notes.append(
            f"frozen={timeline.fault_ended - timeline.fault_started:.1f}s ({frozen} processes)"
        )

    _outage("frozen database", gateway, postgres, freeze_and_thaw)


def _outage(
    name: str, gateway: Gateway, postgres: PostgresServer, fault: Callable[[Timeline], None]
) -> None:
    """Load, fault, recovery; then stop the gateway and check what the clients saw."""
    assert gateway.process is not None
    master = gateway.process.pid
    load = Load(gateway.base, gateway.api_key)
    probe = HealthProbe(gateway.base)
    timeline = Timeline()
    probe.start()
    load.start()
    try:
        # The fault hits a gateway that is serving, not one still loading its models.
        load.wait_for_successes(CLIENTS, timeout=15)
        time.sleep(WARMUP)
        fault(timeline)
        time.sleep(RECOVERY)
        # Judged before anything else can restart it: the same master, still serving.
        same_gateway = gateway.alive() and gateway.process.pid == master
    finally:
        load.stop()
        probe.stop()
    drained = time.monotonic()
    exit_code = gateway.stop()
    stopped = time.monotonic()
    rows = audit_rows(postgres.dsn)
    verify = gateway.cli("audit", "verify")
    verified = time.monotonic()

    problems = _answer_problems(load.replies)
    problems += _audit_problems(load.replies, rows)
    if probe.failures:
        problems.append(
            f"/healthz failed {len(probe.failures)} of {probe.probes} probes "
            f"(no 200 within 2 s): {listed(probe.failures)}"
        )
    problems += _resumption_problems(load, same_gateway)
    if verify.returncode != 0:
        problems.append(
            f"`predgate audit verify` exited {verify.returncode}:\n"
            f"{verify.stdout.strip()}\n{verify.stderr.strip()}"
        )

    print(
        f"\n{name}: responses={_by_status(load.replies)} "
        f"lost={sum(load.lost.values())} {dict(load.lost)} {' '.join(timeline.notes)} "
        f"healthz_failures={len(probe.failures)}/{probe.probes} audit_records={len(rows)} "
        f"verify_exit={verify.returncode} gateway_exit={exit_code}"
        f"\n  by phase: {_by_phase(load, timeline)}"
        f"\n  seconds: load={load.stopped_at - load.started_at:.1f} "
        f"drain={drained - load.stopped_at:.1f} gateway_stop={stopped - drained:.1f} "
        f"verify={verified - stopped:.1f}"
    )
    if problems:
        print(f"gateway log {gateway.log_path} (tail):\n{gateway.log_tail(30)}")
    assert not problems, f"{name}: {len(problems)} failed checks:\n- " + "\n- ".join(problems)


def _problem_code(reply: Reply) -> str | None:
    """The `code` of a problem+json body, None if the body is not JSON with one."""
    try:
        body = json.loads(reply.body)
    except ValueError:
        return None
    code = body.get("code") if isinstance(body, dict) else None
    return code if isinstance(code, str) and code else None


def _answer_problems(replies: list[Reply]) -> list[str]:
    """Every answer carries X-Request-ID; no 500; every error is problem+json with a code."""
    problems = []
    anonymous = [reply for reply in replies if not reply.request_id]
    if anonymous:
        problems.append(
            f"{len(anonymous)} of {len(replies)} responses carried no X-Request-ID "
            f"(statuses {dict(Counter(reply.status for reply in anonymous))})"
        )
    bare = [str(reply.request_id) for reply in replies if reply.status == 500]
    if bare:
        problems.append(f"{len(bare)} responses were 500: {listed(bare)}")
    malformed = [
        f"{reply.request_id} ({reply.status} {reply.content_type or 'no content type'})"
        for reply in replies
        if reply.status >= 400
        and (reply.content_type.split(";")[0].strip() != PROBLEM_JSON or not _problem_code(reply))
    ]
    if malformed:
        problems.append(
            f"{len(malformed)} error responses were not {PROBLEM_JSON} with a code: "
            f"{listed(malformed)}"
        )
    return problems


def _audit_problems(
    replies: list[Reply], rows: list[tuple[str | None, int | None, str | None, int, str]]
) -> list[str]:
    """Every answer a client received has exactly one record, with the status it received."""
    statuses: dict[str, list[int | None]] = {}
    for request_id, http_status, _route, _seq, _hash in rows:
        if request_id is not None:
            statuses.setdefault(request_id, []).append(http_status)
    answered = [reply for reply in replies if reply.request_id]
    missing = [r.request_id for r in answered if r.request_id not in statuses]
    repeated = [
        f"{r.request_id} x{len(statuses[r.request_id])}"
        for r in answered
        if r.request_id in statuses and len(statuses[r.request_id]) > 1
    ]
    wrong = [
        f"{r.request_id} (client {r.status}, record {statuses[r.request_id][0]})"
        for r in answered
        if r.request_id in statuses
        and len(statuses[r.request_id]) == 1
        and statuses[r.request_id][0] != r.status
    ]
    problems = []
    if missing:
        by_status = dict(Counter(r.status for r in answered if r.request_id not in statuses))
        problems.append(
            f"{len(missing)} of {len(answered)} answered requests have no audit record "
            f"(client statuses {by_status}): {listed([str(m) for m in missing])}"
        )
    if repeated:
        problems.append(f"{len(repeated)} requests have several audit records: {listed(repeated)}")
    if wrong:
        problems.append(
            f"{len(wrong)} audit records hold another status than the client got: {listed(wrong)}"
        )
    return problems


def _resumption_problems(load: Load, same_gateway: bool) -> list[str]:
    """Successes again in the last TAIL seconds, from the gateway that was started."""
    problems = []
    tail = [r for r in load.replies if load.stopped_at - TAIL <= r.at <= load.stopped_at]
    if not any(reply.status == 200 for reply in tail):
        problems.append(
            f"service did not resume: no 200 in the last {TAIL:.0f} s of load "
            f"(answers then: {_by_status(tail)})"
        )
    if not same_gateway:
        problems.append("the gateway process was not the one started, still running, at the end")
    return problems


def _by_status(replies: list[Reply]) -> dict[str, int]:
    """Answers counted by status and problem code, e.g. {'200': 812, '503/audit_unavailable': 9}."""
    counts: Counter[str] = Counter()
    for reply in replies:
        code = _problem_code(reply) if reply.status >= 400 else None
        counts[f"{reply.status}/{code}" if code else str(reply.status)] += 1
    return dict(sorted(counts.items()))


def _by_phase(load: Load, timeline: Timeline) -> str:
    phases = {
        "before": (load.started_at, timeline.fault_started),
        "during": (timeline.fault_started, timeline.fault_ended),
        "after": (timeline.fault_ended, float("inf")),
    }
    return " ".join(
        f"{phase}={_by_status([r for r in load.replies if start <= r.at < end])}"
        for phase, (start, end) in phases.items()
    )
