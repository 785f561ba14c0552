"""Partner receipts at scale, in one run (by hand, never by the tests):

    .venv/bin/python -m bench.receipts [--records 1000000] [--quick]

1. Proofs. A migrated SQLite database (in a temporary directory) and a fresh PostgreSQL schema
   (in the local `test` database) get the same N chain-hashed audit records: a few tenants'
   predict requests and the other records a gateway writes, loaded in bulk (timed as setup).
   Then, on each backend: grow_and_sign over all N records (time, CPU, the tree's storage);
   receipt() and inclusion_proof() alone for random request ids under a head covering them;
   consistency() for random size pairs (each series up to --samples calls or --budget
   seconds); receipt, proof and checkpoint sizes; the partner's verify_receipt(); the plans of
   receipt()'s queries; and the writer's step at a checkpoint (1000 records more, a head
   signed) on the grown tree.
2. Throughput. POST /v1/predict with PREDGATE_RECEIPTS=on and =off in interleaved rounds, on
   `predgate serve` embedded (SQLite, 1 worker) and scale-out (PostgreSQL + Redis, 2 workers,
   behind-proxy as compose runs it): wrk -t2 -c16, and the CPU per request of the server's
   processes, PostgreSQL and Redis (bench/compare.py's measurement). Each server start checks
   that an answer carries the `Audit-Record` header exactly when receipts are on.

Writes bench/results/receipts.{md,json}. Everything it creates (temporary directories, the
schema, scratch databases, Redis keys, servers) is removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import base64
import datetime
import hashlib
import itertools
import json
import os
import random
import re
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import psycopg
import redis
from sqlalchemy import Connection, Engine, event, func, select, text, update
from sqlalchemy.orm import Session

from audit.chain import lock_head, write_checkpoint
from audit.events import GENESIS_HASH, RECORD_FIELDS, AuditEvent
from audit.receipt_verifier import verify_consistency, verify_receipt
from audit.receipts import PARTNER_EVENTS, PARTNER_PRINCIPALS, LogIdentity, consistency, receipt
from audit.recorder import load_audit_config
from audit.signing import CheckpointSigner
from audit.tables import AuditHeadRow
from audit.tree import grow_and_sign, inclusion_proof, tree_root
from audit.tree_tables import AuditTreeNodeRow
from bench import report
from bench.compare import ROW, Backends, Target, measure_load
from bench.cpu import PostgresCpu, machine_seconds, process_seconds
from bench.load import CONNECTIONS, THREADS, WRK, run_wrk
from bench.provision import (
    delete_redis_keys,
    monitor_url,
    predgate_env,
    provision_predgate,
    scratch_database,
    train_models,
)
from bench.servers import predgate_server, unwind_on_sigterm
from db.engine import create_db_engine
from db.migrations import upgrade

RESULTS = Path(__file__).with_name("results")
STARTED = time.monotonic()
SEED = 9162
CHUNK = 20_000  # records generated, then written to both databases, at a time
# The writer grows the tree at each checkpoint (every 1000 records by default): that step is
# timed STEPS times past the measured size, on records loaded for it.
STEP, STEPS = 1000, 5
MIN_SAMPLES = 50  # a timed series stops at its time budget, but not before this many calls
CHECKED = 10  # consistency proofs checked by the partner's verifier
MODEL = "linear"  # the cheaper model: receipts' share of a request is largest on it
WARM_SECONDS = 2
AUDIT_RECORD = re.compile(r'^seq=\d+, hash="[0-9a-f]{64}"$')
# What a busy gateway's log holds: (share, event type, status, method, route, credential).
MIX = (
    (0.855, "predict", 200, "POST", "/v1/predict", "api_key"),
    (0.045, "predict", 200, "POST", "/v1/predict", "client"),
    (0.02, "predict", 422, "POST", "/v1/predict", "api_key"),
    (0.03, "model.read", 200, "GET", "/v1/model", "api_key"),
    (0.015, "ratelimit.exceeded", 429, "POST", "/v1/predict", "api_key"),
    (0.01, "token.issue", 200, "POST", "/oauth/token", "client"),
    (0.01, "authn.failure", 401, "POST", "/v1/predict", None),
    (0.015, "health.check", 200, "GET", "/readyz", None),
)
SOURCES = ("tree", "merkle", "receipts", "receipt_verifier", "writer", "chain")
AGENTS = ("python-requests/2.32.3", "okhttp/4.12.0", "Go-http-client/2.0", "curl/8.5.0")


@dataclass(frozen=True)
class Tenant:
    id: int
    share: float
    model: str
    version: int
    sha256: str
    key_ids: tuple[str, ...]
    client_id: str


@dataclass(frozen=True)
class Sample:
    """A partner's request whose receipt is asked for."""

    seq: int
    tenant_id: int
    request_id: str


def make_tenants(rng: random.Random) -> list[Tenant]:
    models = (("house-price", 3), ("churn", 1), ("fraud", 7), ("house-price", 2))
    return [
        Tenant(
            number,
            share,
            name,
            version,
            f"{rng.getrandbits(256):064x}",
            tuple(f"{rng.getrandbits(64):016x}" for _ in range(2)),
            f"client-{rng.getrandbits(48):012x}",
        )
        for number, (share, (name, version)) in enumerate(
            zip((0.5, 0.25, 0.15, 0.1), models, strict=True), 1
        )
    ]


def make_event(rng: random.Random, ts: datetime.datetime, tenant: Tenant) -> AuditEvent:
    """One request's event, as the gateway records it (event id = request id)."""
    _, event_type, status, method, route, credential = rng.choices(MIX, cum_weights=_CUMULATIVE)[0]
    request_id = uuid.UUID(int=rng.getrandbits(128), version=4).hex
    fields: dict[str, Any] = {
        "event_id": request_id,
        "request_id": request_id,
        "event_type": event_type,
        "outcome": "success" if status < 400 else "failure",
        "reason_code": {401: "invalid_key", 422: "invalid_input", 429: "rate_limited"}.get(status),
        "instance_id": f"gateway-{rng.randrange(2)}",
        "process_id": 100 + rng.randrange(4),
        "ts": ts,
        "duration_ms": rng.lognormvariate(1.0, 0.6),
        "http_status": status,
        "http_method": method,
        "route": route,
        "source_ip": f"203.0.113.{tenant.id * 10 + rng.randrange(3)}",
        "user_agent": AGENTS[tenant.id % len(AGENTS)],
        "response_digest": f"{rng.getrandbits(256):064x}",
    }
    if method == "POST":
        fields["request_digest"] = f"{rng.getrandbits(256):064x}"
    if credential is None:
        fields["principal_id"] = rng.choice(tenant.key_ids) if status == 401 else None
    else:
        by_key = credential == "api_key"
        fields.update(
            tenant_id=tenant.id,
            principal_type=credential,
            principal_id=rng.choice(tenant.key_ids) if by_key else tenant.client_id,
            auth_method="api_key" if by_key else "jwt",
        )
    if event_type == "predict" and status == 200:
        fields.update(
            model_name=tenant.model,
            model_version=tenant.version,
            model_sha256=tenant.sha256,
            rows=1 if rng.random() < 0.9 else rng.randrange(2, 50),
        )
    return AuditEvent(**fields)


_CUMULATIVE = list(itertools.accumulate(entry[0] for entry in MIX))


# --- part 1: a large log on both backends --------------------------------------------------


@contextmanager
def postgres_schema(base_url: str) -> Iterator[tuple[str, str]]:
    """A fresh schema in the database at base_url: (schema, URL whose search_path is it);
    dropped with everything in it at the end."""
    schema = f"predgate_bench_{secrets.token_hex(5)}"
    admin = create_db_engine(base_url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield schema, f"{base_url}?options={quote(f'-csearch_path={schema}')}"
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
        log(f"dropped PostgreSQL schema {schema}")


def chained_chunks(
    count: int, sampled: int, want: int, samples: list[Sample]
) -> Iterator[list[tuple[AuditEvent, dict[str, Any]]]]:
    """`count` events over a month and their records, chained from the genesis hash as the
    chain does, CHUNK at a time; adds to `samples` up to `want` random partner requests among
    the first `sampled` records."""
    rng = random.Random(SEED)
    tenants = make_tenants(rng)
    shares = list(itertools.accumulate(t.share for t in tenants))
    chosen = set(rng.sample(range(1, sampled + 1), min(sampled, 2 * want)))
    step = datetime.timedelta(days=30) / count
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    prev_hash = GENESIS_HASH
    for first in range(1, count + 1, CHUNK):
        chunk = []
        for seq in range(first, min(count, first + CHUNK - 1) + 1):
            tenant = rng.choices(tenants, cum_weights=shares)[0]
            event = make_event(rng, start + step * seq, tenant)
            record = event.to_record(seq=seq, prev_hash=prev_hash)
            prev_hash = record["hash"]
            chunk.append((event, record))
            if seq in chosen and _partner(event) and len(samples) < want:
                samples.append(Sample(seq, tenant.id, event.event_id))
        yield chunk


def load_records(
    count: int, sampled: int, sqlite_path: Path, pg_url: str, schema: str, want: int
) -> tuple[dict[str, float], list[Sample], str]:
    """Write `count` chained records to both databases in bulk.

    Returns the seconds spent generating and writing to each, `want` random partner requests
    among the first `sampled` records (in random order), and the last record's hash.
    """
    seconds = {"generate": 0.0, "sqlite": 0.0, "postgresql": 0.0}
    samples: list[Sample] = []
    chunks = chained_chunks(count, sampled, want, samples)
    columns = ", ".join(RECORD_FIELDS)
    insert = f"INSERT INTO audit_records ({columns}) VALUES ({', '.join('?' * len(RECORD_FIELDS))})"  # noqa: S608
    lite = sqlite3.connect(sqlite_path)
    # Bulk load: no fsync until the end (setup, not what is measured).
    lite.execute("PRAGMA synchronous=OFF")
    lite.execute("PRAGMA cache_size=-524288")
    last_hash = GENESIS_HASH
    with (
        psycopg.connect(pg_url, options=f"-csearch_path={schema}") as pg,
        pg.cursor() as cursor,
    ):
        with cursor.copy(f"COPY audit_records ({columns}) FROM STDIN") as copy:
            while True:
                began = time.perf_counter()
                chunk = next(chunks, None)
                if chunk is None:
                    break
                generated = time.perf_counter()
                # Timestamps as the gateway stores them on SQLite: naive UTC text.
                sqlite_ts = "%Y-%m-%d %H:%M:%S.%f"
                lite.executemany(
                    insert,
                    [
                        tuple(
                            e.ts.strftime(sqlite_ts) if f == "ts" else r[f] for f in RECORD_FIELDS
                        )
                        for e, r in chunk
                    ],
                )
                written = time.perf_counter()
                for e, r in chunk:
                    copy.write_row(tuple(e.ts if f == "ts" else r[f] for f in RECORD_FIELDS))
                last_hash = chunk[-1][1]["hash"]
                seconds["generate"] += generated - began
                seconds["sqlite"] += written - generated
                seconds["postgresql"] += time.perf_counter() - written
            ending = time.perf_counter()
        pg.commit()
        seconds["postgresql"] += time.perf_counter() - ending
    ending = time.perf_counter()
    lite.commit()
    lite.close()
    seconds["sqlite"] += time.perf_counter() - ending
    random.Random(SEED).shuffle(samples)
    return seconds, samples, last_hash


def _partner(event: AuditEvent) -> bool:
    return event.event_type in PARTNER_EVENTS and event.principal_type in PARTNER_PRINCIPALS


def close_chain(engine: Engine, signer: CheckpointSigner, count: int, last_hash: str) -> None:
    """Move the chain's head to the loaded records and sign a checkpoint of it, as the writer
    would have; PostgreSQL's planner statistics are refreshed as autovacuum would."""
    with engine.begin() as connection:
        connection.execute(
            update(AuditHeadRow).where(AuditHeadRow.id == 1).values(seq=count, hash=last_hash)
        )
        write_checkpoint(connection, lock_head(connection), signer=signer, kind="checkpoint")
    vacuum_analyze(engine, "audit_records")


def vacuum_analyze(engine: Engine, table: str) -> float:
    """PostgreSQL: what autovacuum does after a bulk insert, done now so that it does not run
    during a measurement; the seconds it took."""
    began = time.perf_counter()
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            connection.execute(text(f"VACUUM ANALYZE {table}"))
    return time.perf_counter() - began


def measure_proofs(
    engine: Engine,
    signer: CheckpointSigner,
    count: int,
    samples: list[Sample],
    pairs: int,
    budget: float,
) -> dict[str, Any]:
    """Tree growth over the first `count` records, then receipts, proofs and their
    verification under a head of that size, then the writer's growth steps past it."""
    results: dict[str, Any] = {"growth": measure_growth(engine, signer, count)}
    results["vacuum_tree_s"] = vacuum_analyze(engine, "audit_tree_nodes")
    with engine.connect() as connection:
        results["storage"] = storage(connection)
    log_identity = LogIdentity(signer)
    receipts: list[dict[str, Any]] = []
    with engine.connect() as connection, Session(bind=connection) as session:

        def fetch(sample: Sample) -> None:
            found = receipt(
                session, log_identity, tenant_id=sample.tenant_id, request_id=sample.request_id
            )
            if found is None or found["tree_size"] != count or found["record"]["seq"] != sample.seq:
                raise RuntimeError(f"no receipt, or the wrong one, for {sample}")
            receipts.append(found)

        results["receipt"] = timed(session, samples, fetch, budget)
        proofs: list[list[bytes]] = []
        results["inclusion_proof"] = timed(
            session,
            samples,
            lambda s: proofs.append(inclusion_proof(session, s.seq - 1, count)),
            budget,
        )
        rng = random.Random(SEED + 1)
        sizes = [
            (old, rng.randint(old, count)) for old in rng.choices(range(1, count + 1), k=pairs)
        ]
        shown: list[list[str]] = []
        results["consistency"] = timed(
            session, sizes, lambda pair: shown.append(consistency(session, *pair)), budget
        )
        check_consistency(session, sizes[:CHECKED], shown[:CHECKED])
    results["plans"] = query_plans(
        engine,
        lambda session: receipt(
            session, log_identity, tenant_id=samples[0].tenant_id, request_id=samples[0].request_id
        ),
    )
    pem = signer.public_pem()
    results["verify_receipt"] = timed(None, receipts, lambda r: verify_receipt(r, pem), budget)
    results["sizes"] = {
        "receipt_json_bytes": spread([len(compact(r)) for r in receipts]),
        "inclusion_hashes": spread([len(p) for p in proofs]),
        "consistency_hashes": spread([len(p) for p in shown]),
        "checkpoint_note_bytes": len(receipts[0]["checkpoint"].encode()),
    }
    results["checkpoint_step"] = measure_steps(engine, signer, count)
    return results


def measure_steps(engine: Engine, signer: CheckpointSigner, count: int) -> dict[str, Any]:
    """The writer's work at each checkpoint, on a tree of `count` leaves: grow it by STEP
    records and sign a head, in a transaction of its own (as GroupCommitWriter does)."""
    seconds, cpu = [], []
    for number in range(1, STEPS + 1):
        cpu_before, began = time.process_time(), time.perf_counter()
        with engine.begin() as connection:
            head = grow_and_sign(connection, signer, up_to_seq=count + number * STEP)
        seconds.append((time.perf_counter() - began) * 1000)
        cpu.append((time.process_time() - cpu_before) * 1000)
        if head is None or head.size != count + number * STEP:
            raise RuntimeError("a growth step did not reach its size")
    return spread(seconds) | {"n": STEPS, "records": STEP, "python_cpu_ms": spread(cpu)}


def query_plans(engine: Engine, run: Callable[[Session], object]) -> list[dict[str, Any]]:
    """The statements `run` sends, each with the database's plan for it (EXPLAIN)."""
    sent: list[tuple[str, Any]] = []

    def capture(*args: Any) -> None:
        sent.append((args[2], args[3]))  # statement, parameters

    with engine.connect() as connection:
        event.listen(connection, "before_cursor_execute", capture)
        with Session(bind=connection) as session:
            run(session)
            session.rollback()
        event.remove(connection, "before_cursor_execute", capture)
        explain = "EXPLAIN " if engine.dialect.name == "postgresql" else "EXPLAIN QUERY PLAN "
        plans = [
            {
                "statement": " ".join(statement.split()),
                "plan": [
                    str(row[-1])
                    for row in connection.exec_driver_sql(explain + statement, parameters)
                ],
            }
            for statement, parameters in sent
        ]
        connection.rollback()
    return plans


def measure_growth(engine: Engine, signer: CheckpointSigner, count: int) -> dict[str, Any]:
    """grow_and_sign over the whole log in one transaction: wall time, this process's CPU and
    (PostgreSQL) its backend's CPU; the machine's busy cores show what else ran."""
    with engine.connect() as connection:
        backend = _backend_pid(connection)
        connection.commit()
        database_before = process_seconds(backend) if backend else None
        machine_before, cpu_before = machine_seconds(), time.process_time()
        began = time.perf_counter()
        with connection.begin():
            head = grow_and_sign(connection, signer, up_to_seq=count)
        wall = time.perf_counter() - began
        cpu = time.process_time() - cpu_before
        machine = machine_seconds() - machine_before
        database = process_seconds(backend) if backend else None
    if head is None or head.size != count:
        raise RuntimeError(f"the tree holds {head and head.size} leaves, not {count}")
    return {
        "seconds": wall,
        "records_per_s": count / wall,
        "python_cpu_s": cpu,
        "database_cpu_s": (database - database_before)
        if database is not None and database_before is not None
        else None,
        "machine_busy_cores": machine / wall,
    }


def _backend_pid(connection: Connection) -> int | None:
    if connection.dialect.name != "postgresql":
        return None
    return int(connection.scalar(text("SELECT pg_backend_pid()")) or 0) or None


def storage(connection: Connection) -> dict[str, int]:
    """Rows of the tree, and bytes (tables and their indexes) of the tree and the records."""
    rows = int(connection.scalar(select(func.count()).select_from(AuditTreeNodeRow)) or 0)
    if connection.dialect.name == "postgresql":
        size = "SELECT pg_total_relation_size(CAST(:name AS regclass))"
        tree = connection.scalar(text(size), {"name": "audit_tree_nodes"})
        records = connection.scalar(text(size), {"name": "audit_records"})
    else:
        statement = text(
            "SELECT m.tbl_name, sum(s.pgsize) FROM dbstat s "
            "JOIN sqlite_master m ON m.name = s.name GROUP BY m.tbl_name"
        )
        by_table = {str(name): int(size) for name, size in connection.execute(statement)}
        tree, records = by_table["audit_tree_nodes"], by_table["audit_records"]
    return {"tree_rows": rows, "tree_bytes": int(tree or 0), "records_bytes": int(records or 0)}


def timed(
    session: Session | None, items: list[Any], call: Callable[[Any], object], budget: float
) -> Any:
    """Wall time of call(item) per item, each in a transaction of its own, until the items or
    the time budget (seconds) run out."""
    seconds: list[float] = []
    deadline = time.perf_counter() + budget
    for item in items:
        if len(seconds) >= MIN_SAMPLES and time.perf_counter() > deadline:
            break
        began = time.perf_counter()
        call(item)
        seconds.append(time.perf_counter() - began)
        if session is not None:
            session.rollback()
    return spread([s * 1000 for s in seconds]) | {"n": len(seconds), "unit": "ms"}


def check_consistency(session: Session, sizes: list[tuple[int, int]], proofs: list[Any]) -> None:
    """The partner's check of some proofs, against roots computed from the stored tree."""
    for (old, new), proof in zip(sizes, proofs, strict=True):
        raw = [base64.b64decode(p) for p in proof]
        verify_consistency(old, new, tree_root(session, old), tree_root(session, new), raw)
    session.rollback()


def spread(values: list[float] | list[int]) -> dict[str, float]:
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": float(p50), "p99": float(p99), "max": float(max(values))}


def compact(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


def run_proofs(args: argparse.Namespace, workdir: Path, cleanup: ExitStack) -> dict[str, Any]:
    """Part 1 on both backends: setup, then the measurements."""
    signer = load_audit_config(workdir / "keys", signing_key="", instance_id="bench").signer
    sqlite_path = workdir / "receipts.db"
    schema, pg_url = cleanup.enter_context(postgres_schema(args.database_url))
    engines = {
        "SQLite": create_db_engine(f"sqlite:///{sqlite_path}"),
        "PostgreSQL": create_db_engine(pg_url),
    }
    for engine in engines.values():
        cleanup.callback(engine.dispose)
    began = time.perf_counter()
    for engine in engines.values():
        upgrade(engine)
    setup: dict[str, Any] = {"migrate_s": time.perf_counter() - began}
    log(f"migrated SQLite ({sqlite_path}) and PostgreSQL schema {schema}")
    libpq = args.database_url.replace("postgresql+psycopg://", "postgresql://")
    total = args.records + STEP * STEPS
    seconds, samples, last_hash = load_records(
        total, args.records, sqlite_path, libpq, schema, args.samples
    )
    setup["load_s"] = seconds
    setup["records_loaded"] = total
    began = time.perf_counter()
    for engine in engines.values():
        close_chain(engine, signer, total, last_hash)
    setup["close_chain_s"] = time.perf_counter() - began
    log(f"loaded {total} records: {', '.join(f'{k} {v:.0f} s' for k, v in seconds.items())}")
    results: dict[str, Any] = {"setup": setup, "samples": len(samples), "backends": {}}
    for name, engine in engines.items():
        began = time.perf_counter()
        results["backends"][name] = measure_proofs(
            engine, signer, args.records, samples, args.samples, args.budget
        )
        results["backends"][name]["part_s"] = time.perf_counter() - began
        growth = results["backends"][name]["growth"]
        log(f"{name}: tree grown at {growth['records_per_s']:.0f} records/s; proofs measured")
    return results


# --- part 2: predict throughput with receipts on and off -----------------------------------


@dataclass(frozen=True)
class Deployment:
    """One predgate deployment with receipts on or off, and how it is served and sampled."""

    kind: str  # embedded, scale-out
    receipts: bool
    env: dict[str, str]
    api_key: str
    backends: Backends | None

    def bearer(self, _base_url: str) -> str:
        return f"Bearer {self.api_key}"

    @property
    def variant(self) -> str:
        return f"{self.kind}, receipts {'on' if self.receipts else 'off'}"


def prepare_deployments(
    args: argparse.Namespace, workdir: Path, cleanup: ExitStack
) -> list[Deployment]:
    """Both kinds, each with receipts on and off in a data directory and database of its own
    (one log's tree never has to catch up with records written while receipts were off)."""
    model_dir = workdir / "models"
    model_dir.mkdir()
    models = {MODEL: train_models(model_dir)[MODEL]}
    client = redis.Redis.from_url(args.redis_url)
    cleanup.callback(client.close)
    client.ping()
    run_id = secrets.token_hex(4)
    prefix = f"predgate-bench-{run_id}"
    cleanup.callback(
        lambda: log(f"deleted {delete_redis_keys(client, prefix)} Redis keys under {prefix}")
    )
    planned: list[tuple[str, bool, dict[str, str], Backends | None]] = []
    for receipts in (True, False):
        flag = "on" if receipts else "off"
        planned.append(
            ("embedded", receipts, predgate_env(workdir / f"e-{flag}", receipts=flag), None)
        )
        database = f"predgate_bench_{run_id}_{flag}"
        url = cleanup.enter_context(scratch_database(args.database_server, database))
        env = predgate_env(
            workdir / f"s-{flag}",
            database_url=url,
            redis_url=args.redis_url,
            ratelimit_key_prefix=f"{prefix}-{flag}",
            receipts=flag,
        )
        backends = Backends(PostgresCpu(monitor_url(args.database_server), database), client)
        planned.append(("scale-out", receipts, env, backends))
    with ThreadPoolExecutor(max_workers=2) as pool:
        done = list(pool.map(lambda p: provision_predgate(p[2], models, False), planned))
    return [
        Deployment(kind, receipts, env, provisioned[0][MODEL].api_key, backends)
        for (kind, receipts, env, backends), provisioned in zip(planned, done, strict=True)
    ]


def run_throughput(
    args: argparse.Namespace, workdir: Path, cleanup: ExitStack
) -> tuple[list[report.Measurement], dict[str, Any]]:
    """Interleaved rounds; the on/off order alternates between rounds."""
    deployments = prepare_deployments(args, workdir, cleanup)
    log("provisioned 4 deployments (embedded and scale-out, receipts on and off)")
    (workdir / "logs").mkdir()
    measurements: list[report.Measurement] = []
    checks: dict[str, dict[str, Any]] = {}
    for number in range(1, args.rounds + 1):
        # Receipts on first in odd rounds, off first in even ones.
        order = sorted(deployments, key=lambda d: (d.kind, d.receipts == (number % 2 == 0)))
        for deployment in order:
            scale_out = deployment.kind == "scale-out"
            start = predgate_server(
                deployment.env,
                workdir / "logs" / f"{deployment.variant}.log",
                workers=2 if scale_out else 1,
                behind_proxy=scale_out,
            )
            with start as server:
                target = Target(deployment.variant, MODEL, "/v1/predict", deployment.bearer)
                authorization = deployment.bearer(server.base_url)
                try:
                    header = check_header(server.base_url, authorization, deployment.receipts)
                    checks[deployment.variant] = {"header": header}
                    run_wrk(
                        server.base_url + target.path, authorization, WARM_SECONDS, strict=False
                    )
                    measured = measure_load(
                        server, target, authorization, args, number, deployment.backends
                    )
                except Exception:
                    log(f"{deployment.variant} failed; its server's log ends:\n{server.log_tail()}")
                    raise
            measurements.append(measured)
            log(
                f"round {number}/{args.rounds} {deployment.variant}: "
                f"{measured.requests_per_second:.0f} req/s, p50 {measured.p50_ms:.2f} ms"
            )
    for variant, check in checks.items():
        check |= log_warnings(workdir / "logs" / f"{variant}.log")
    return measurements, checks


def log_warnings(path: Path) -> dict[str, Any]:
    """How many warnings a server's log holds over all rounds, and the first few kinds."""
    lines = [
        line
        for line in path.read_text(errors="replace").splitlines()
        if re.search(r"Warning\b|WARNING|\"warning\"", line)
    ]
    return {"log_warnings": len(lines), "first_warnings": list(dict.fromkeys(lines))[:5]}


def check_header(base_url: str, authorization: str, receipts: bool) -> str:
    """One prediction: its answer names its audit record exactly when receipts are on."""
    request = urllib.request.Request(
        f"{base_url}/v1/predict",
        data=json.dumps(ROW).encode(),
        headers={"Content-Type": "application/json", "Authorization": authorization},
    )
    # Generous: the first request of a fresh worker waits for it to boot and load the model.
    with urllib.request.urlopen(request, timeout=120) as response:
        header = response.headers.get("Audit-Record")
        float(json.load(response)["predictions"][0])
    if receipts and (header is None or not AUDIT_RECORD.match(header)):
        raise RuntimeError(f"receipts on, but the answer's Audit-Record header is {header!r}")
    if not receipts and header is not None:
        raise RuntimeError(f"receipts off, but the answer carries Audit-Record: {header}")
    return f"Audit-Record: {header}" if header else "no Audit-Record header"


# --- results ---------------------------------------------------------------------------------


def proofs_markdown(results: dict[str, Any], count: int) -> list[str]:
    setup, backends = results["setup"], results["backends"]
    load, names = setup["load_s"], list(backends)
    mib = 1024 * 1024

    def row(label: str, cell: Callable[[dict[str, Any]], str]) -> str:
        return f"| {label} | " + " | ".join(cell(backends[name]) for name in names) + " |"

    def ms(key: str) -> Callable[[dict[str, Any]], str]:
        return lambda b: "{p50:.2f} / {p99:.2f} / {max:.2f} (n={n})".format(**b[key])

    def hashes(key: str) -> Callable[[dict[str, Any]], str]:
        return lambda b: "{p50:.0f} / {max:.0f} ({raw:.0f} / {raw_max:.0f} B raw)".format(
            **b["sizes"][key], raw=32 * b["sizes"][key]["p50"], raw_max=32 * b["sizes"][key]["max"]
        )

    def cpu(b: dict[str, Any]) -> str:
        database = b["growth"]["database_cpu_s"]
        return f"{b['growth']['python_cpu_s']:.1f}" + (
            f" + {database:.1f} (backend)" if database is not None else " (in-process)"
        )

    return [
        f"## 1. Proofs at {count:,} records",
        "",
        f"Setup (not measured): {setup['records_loaded']:,} records ({count:,} + {STEPS} steps of "
        f"{STEP}) generated and chain-hashed in {load['generate']:.0f} s (AuditEvent.to_record), "
        f"written to SQLite in {load['sqlite']:.0f} s (executemany) and to PostgreSQL in "
        f"{load['postgresql']:.0f} s (COPY); migrations {setup['migrate_s']:.1f} s; head, "
        f"checkpoint and VACUUM ANALYZE {setup['close_chain_s']:.0f} s.",
        "",
        "| | " + " | ".join(names) + " |",
        "|---|" + "---:|" * len(names),
        row(f"grow_and_sign over {count:,} records: s", lambda b: f"{b['growth']['seconds']:.1f}"),
        row("tree growth: records/s", lambda b: f"{b['growth']['records_per_s']:,.0f}"),
        row("tree growth: CPU s (Python + database)", cpu),
        row(
            "tree growth: machine busy cores", lambda b: f"{b['growth']['machine_busy_cores']:.2f}"
        ),
        row(
            f"writer's step at a checkpoint ({STEP} records more, head signed): ms p50 / max",
            lambda b: "{p50:.0f} / {max:.0f} (n={n})".format(**b["checkpoint_step"]),
        ),
        row("audit_tree_nodes: rows", lambda b: f"{b['storage']['tree_rows']:,}"),
        row(
            "audit_tree_nodes: MiB with index (B/record)",
            lambda b: (
                f"{b['storage']['tree_bytes'] / mib:.0f} ({b['storage']['tree_bytes'] / count:.0f})"
            ),
        ),
        row(
            "audit_records: MiB with indexes",
            lambda b: f"{b['storage']['records_bytes'] / mib:.0f}",
        ),
        row("receipt(): ms p50 / p99 / max", ms("receipt")),
        row("inclusion_proof() alone: ms p50 / p99 / max", ms("inclusion_proof")),
        row("consistency(): ms p50 / p99 / max", ms("consistency")),
        row("verify_receipt() (partner side): ms p50 / p99 / max", ms("verify_receipt")),
        row(
            "receipt JSON: bytes p50 / max",
            lambda b: "{p50:,.0f} / {max:,.0f}".format(**b["sizes"]["receipt_json_bytes"]),
        ),
        row("inclusion proof: hashes p50 / max", hashes("inclusion_hashes")),
        row("consistency proof: hashes p50 / max", hashes("consistency_hashes")),
        row("checkpoint note: bytes", lambda b: f"{b['sizes']['checkpoint_note_bytes']}"),
        "",
        f"Random partner requests (up to {results['samples']}; receipt() finds each by request "
        "id and tenant, under a head of all records) and random pairs 1 <= old <= new <= "
        f"{count:,} for consistency() (the first {CHECKED} checked with verify_consistency "
        "against roots from the stored tree). Each call is timed alone, in a transaction of its "
        "own on an open connection; a series stops at its time budget (n = calls timed). "
        "Receipt JSON is compact. PostgreSQL: a fresh schema of the local `test` database, "
        "VACUUM ANALYZE after the load and after the growth (as autovacuum would); SQLite: the "
        "gateway's engine (WAL), no ANALYZE (the gateway runs none).",
        "",
        "How each backend runs receipt()'s lookups of a record and of tree nodes (EXPLAIN):",
        "",
        *(
            f"- {name}, `{' '.join(plan['statement'].split()[:3])} ... FROM {table}`: "
            + "; ".join(_plan_steps(plan["plan"]))
            for name in names
            for plan in backends[name]["plans"]
            for table in ("audit_records", "audit_tree_nodes")
            if f"FROM {table} " in plan["statement"] + " "
        ),
        "",
    ]


def _plan_steps(lines: list[str]) -> list[str]:
    """A plan's steps without PostgreSQL's cost estimates and filter details."""
    details = ("Filter:", "Index Cond:", "Recheck Cond:", "Sort Key:")
    steps = [re.sub(r"\s*\(cost=[^)]*\)", "", line).strip(" ->") for line in lines]
    counted: dict[str, int] = {}
    for step in steps:
        if step and not step.startswith(details):
            counted[step] = counted.get(step, 0) + 1
    return [step if n == 1 else f"{step} (x{n})" for step, n in counted.items()]


def throughput_markdown(
    measurements: list[report.Measurement], checks: dict[str, Any], args: argparse.Namespace
) -> list[str]:
    rows = {row.variant: row for row in report.summarise(measurements)}
    for row in rows.values():
        # CPU of every other process on the machine meanwhile (other users' work): the noise.
        row.medians["others' cores"] = statistics.median(
            (m.machine_cpu_seconds - m.total_cpu_seconds - m.wrk_cpu_seconds) / m.window_seconds
            for m in measurements
            if m.variant == row.variant
        )
    columns = [*report.COLUMNS, "machine busy cores", "others' cores"]
    lines = [
        "## 2. POST /v1/predict, receipts on and off",
        "",
        "| variant | " + " | ".join(columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for variant, row in rows.items():
        lines.append(
            f"| {variant} | " + " | ".join(_number(row.medians[c]) for c in columns) + " |"
        )
    for kind in ("embedded", "scale-out"):
        on, off = rows.get(f"{kind}, receipts on"), rows.get(f"{kind}, receipts off")
        if on is None or off is None:
            continue
        ratios = [_ratio(on.medians[c], off.medians[c]) for c in columns]
        lines.append(f"| **{kind}: on / off** | " + " | ".join(ratios) + " |")
    paired = round_ratios(measurements)
    lines += [
        "",
        f"`wrk -t{THREADS} -c{CONNECTIONS} -d{args.seconds}s --latency` on POST /v1/predict "
        f"(model `{MODEL}`: Ridge, API key), {args.rounds} round(s), each deployment started "
        "afresh per round (on/off order alternating), checked and warmed for "
        f"{WARM_SECONDS} s; medians over rounds. CPU columns: ms per request of the server's "
        "process tree, of PostgreSQL's processes serving its database (plus the shared "
        "auxiliary ones) and of Redis. Embedded: `predgate serve --workers 1` on SQLite; "
        "scale-out: `--workers 2 --behind-proxy`, PostgreSQL + Redis. Each variant has a "
        "data directory and database of its own.",
        "",
        "Per round, req/s on / off: "
        + "; ".join(
            f"{kind}: {', '.join(f'{r:.3f}' for r in values)}" for kind, values in paired.items()
        ),
        "",
        "At each server start, one answer checked for the header (the last shown), and the "
        "warnings in each server's log over all rounds: "
        + "; ".join(
            f"{variant}: {check['header'][:40]}..., {check['log_warnings']} warnings"
            for variant, check in checks.items()
        ),
        "",
    ]
    return lines


def round_ratios(measurements: list[report.Measurement]) -> dict[str, list[float]]:
    """req/s with receipts on over off, within each round (the paired comparison)."""
    by_key = {(m.round, m.variant): m.requests_per_second for m in measurements}
    paired: dict[str, list[float]] = {}
    for (number, variant), rate in by_key.items():
        kind, _, flag = variant.rpartition(", receipts ")
        if flag == "on" and (number, f"{kind}, receipts off") in by_key:
            paired.setdefault(kind, []).append(rate / by_key[number, f"{kind}, receipts off"])
    return paired


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3f}" if value < 1 else f"{value:.2f}"


def _ratio(on: float | None, off: float | None) -> str:
    return "-" if on is None or not off else f"{on / off:.3f}"


def write_results(
    args: argparse.Namespace,
    context: dict[str, Any],
    proofs: dict[str, Any] | None,
    throughput: tuple[list[report.Measurement], dict[str, Any]] | None,
) -> None:
    lines = [
        "# Partner receipts: proofs at scale, and the predict path with receipts on and off",
        "",
        f"- date: {context['date']}; commit: {context['commit']}",
        f"- machine: {context['machine']}; Python {context['python']}",
        f"- command: `{context['command']}` ({context['duration_s']:.0f} s; part 1 "
        f"{context.get('proofs_s', 0):.0f} s, part 2 {context.get('throughput_s', 0):.0f} s)",
        "- audit sources (sha256[:12]): "
        + ", ".join(f"{name} {digest}" for name, digest in context["sources"].items()),
        f"- uptime before: {context['uptime_before']}",
        f"- uptime after: {context['uptime_after']}",
        "- the machine is shared: `machine busy cores` counts every process, this benchmark's "
        "and others'",
        "",
    ]
    data: dict[str, Any] = {"context": context}
    if proofs is not None:
        lines += proofs_markdown(proofs, args.records)
        data["proofs"] = proofs
    if throughput is not None:
        lines += throughput_markdown(*throughput, args)
        data["throughput"] = {
            "measurements": [asdict(m) for m in throughput[0]],
            "medians": [asdict(row) for row in report.summarise(throughput[0])],
            "round_ratios": round_ratios(throughput[0]),
            "header_checks": throughput[1],
        }
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    page = "\n".join(lines)
    (output / "receipts.md").write_text(page)
    (output / "receipts.json").write_text(json.dumps(data, indent=2) + "\n")
    print(page)
    log(f"wrote {output}/receipts.md and receipts.json")


def describe_machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=RESULTS.parent
    ).stdout.strip()
    # The code under test may be uncommitted: name its state by the digests of its files.
    sources = [RESULTS.parent.parent / "audit" / f"{name}.py" for name in SOURCES]
    return {
        "machine": f"{os.cpu_count()} CPUs, {model}",
        "commit": f"{commit or 'unknown'} + uncommitted changes",
        "python": sys.version.split()[0],
        "sources": {p.name: hashlib.sha256(p.read_bytes()).hexdigest()[:12] for p in sources},
    }


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def main() -> None:
    """Part 1, then part 2 (after part 1's databases are gone); then write the results."""
    args = arguments()
    unwind_on_sigterm()
    context: dict[str, Any] = {
        "command": " ".join(["python -m bench.receipts", *sys.argv[1:]]),
        "records": args.records,
        "uptime_before": uptime(),
        **describe_machine(),
    }
    proofs, throughput = None, None
    with ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="predgate-receipts-"))
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        if args.part in ("all", "proofs"):
            began = time.monotonic()
            with ExitStack() as part:  # its databases go before part 2 runs
                (workdir / "proofs").mkdir()
                proofs = run_proofs(args, workdir / "proofs", part)
            context["proofs_s"] = time.monotonic() - began
        if args.part in ("all", "throughput"):
            if not Path(WRK).exists():
                raise SystemExit("wrk is needed: apt-get install wrk")
            began = time.monotonic()
            throughput = run_throughput(args, workdir, cleanup)
            context["throughput_s"] = time.monotonic() - began
    context["uptime_after"] = uptime()
    context["duration_s"] = time.monotonic() - STARTED
    context["date"] = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    write_results(args, context, proofs, throughput)


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="default 1,000,000")
    parser.add_argument("--quick", action="store_true", help="20,000 records, 1 round of 3 s")
    parser.add_argument("--samples", type=int, default=2000, help="receipts and proof pairs")
    parser.add_argument(
        "--budget",
        type=float,
        default=60.0,
        help="seconds per timed series of part 1 (at least 50 calls), default 60",
    )
    parser.add_argument("--rounds", type=int, default=3, help="default 3")
    parser.add_argument("--seconds", type=int, default=10, help="per measurement, default 10")
    parser.add_argument("--part", choices=("all", "proofs", "throughput"), default="all")
    parser.add_argument(
        "--database-url",
        default="postgresql+psycopg://postgres@127.0.0.1:5432/test",
        help="the database part 1 creates its schema in",
    )
    parser.add_argument(
        "--database-server",
        default="postgresql+psycopg://postgres@127.0.0.1:5432",
        help="the server part 2 creates (and drops) its scratch databases on",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    if args.quick:
        args.records, args.rounds, args.seconds = 20_000, 1, 3
    if args.records < 2 or args.samples < 1 or args.rounds < 1 or args.seconds < 1:
        parser.error("--records must be at least 2; --samples, --rounds, --seconds at least 1")
    return args


def log(message: str) -> None:
    print(f"[receipts {time.monotonic() - STARTED:5.0f}s] {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
