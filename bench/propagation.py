"""Change propagation: how long after a revoke (API key, OAuth client, access token), a tenant
suspension or a reassignment, made from another process, some worker still answers as before.

Two `predgate serve --workers 2 --threads 4` gateways on one PostgreSQL schema and one Redis
prefix of their own; per trial, 8 threads hammer GET /v1/model on new connections with a fresh
subject that all four workers have served, the change is made (the CLI; POST /oauth/revoke for
a token), and the answers are watched until 1.5 s after the change returned. A delay is how late
a request started that still got the answer from before the change: from T1, when the command
returned (a lower bound: the change committed before), from the change's audit record (stamped
in its transaction before the commit: an upper bound), and from T0, when the command started.
The requirement: the largest delay of each kind at most 1 s, by the upper bound.

    .venv/bin/python -m bench.propagation [--trials 20] [--kinds key_revoke,reassign]
        [--database-url postgresql+psycopg://...] [--redis-url redis://...] [--exec-cli]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from tests.propagation.deployment import (
    KINDS,
    OBSERVE_SECONDS,
    deployment,
    explain,
    progress_printer,
    run_kind,
    table,
)

LIMIT_SECONDS = 1.0


def main() -> None:
    """Run the trials and print the delay distribution per kind."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20, help="counted trials per kind")
    parser.add_argument("--kinds", default=",".join(KINDS), help="comma-separated subset")
    parser.add_argument(
        "--database-url",
        default=os.environ.get(
            "PREDGATE_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="a schema of its own is created in this database and dropped afterwards",
    )
    parser.add_argument(
        "--redis-url",
        default=os.environ.get("PREDGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"),
    )
    parser.add_argument(
        "--exec-cli",
        action="store_true",
        help="run every command as the predgate executable (~5 s of imports each) instead of "
        "forking it from a process that imported the CLI once",
    )
    args = parser.parse_args()
    kinds = tuple(kind.strip() for kind in args.kinds.split(",") if kind.strip())
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or args.trials < 1:
        parser.error(f"--kinds from {', '.join(KINDS)}; --trials at least 1")

    data_dir = Path(tempfile.mkdtemp(prefix="predgate-propagation-"))
    started = time.monotonic()
    try:
        with deployment(
            args.database_url, args.redis_url, data_dir, exec_cli=args.exec_cli
        ) as running:
            running.prepare(kinds, args.trials)
            reports = []
            for kind in kinds:
                print(f"{kind}:", flush=True)
                reports.append(run_kind(running, kind, args.trials, progress_printer(sys.stdout)))
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    print()
    print(
        f"2 gateways x 2 workers; {args.trials} trials per kind; answers watched until "
        f"{OBSERVE_SECONDS} s after the change; changes by "
        f"{'the predgate executable' if args.exec_cli else 'forked predgate commands'}; "
        f"{time.monotonic() - started:.0f} s in all"
    )
    print(table(reports))
    for report in reports:
        print(explain(report))
    failed = [report.kind for report in reports if report.max_delay_from_record > LIMIT_SECONDS]
    verdict = f"FAILED for {', '.join(failed)}" if failed else "met"
    print(f"requirement (largest delay <= {LIMIT_SECONDS:.0f} s per kind): {verdict}")


if __name__ == "__main__":
    main()
