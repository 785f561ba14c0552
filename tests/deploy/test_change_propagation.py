"""A revoke, a suspension or a reassignment made from another process reaches every worker of
every replica within 1 s: two `predgate serve --workers 2` gateways on PostgreSQL and Redis,
TRIALS trials per kind, each on a fresh subject cached by all four workers before the change.

The delay of a trial is how late a request started that was still answered as before the
change (0 if none). Counted from T1, when the change's command returned, it is a lower bound on
the real delay, as the change committed before T1; counted from the change's audit record,
stamped in its transaction before it committed, it is an upper bound. Both must be <= 1 s.

The gateways are the replicas of the package's topology (tests/deploy/conftest.py), started once
for these trials and for the tests of nginx in front of them; the trials reach them directly.
"""

from __future__ import annotations

import sys

import pytest

from tests.deploy.topology import Topology
from tests.propagation.deployment import (
    KINDS,
    Deployment,
    KindReport,
    explain,
    progress_printer,
    run_kind,
    table,
)

# The test runs a few trials per kind to stay within the suite's time; `python -m bench.propagation`
# runs 20 of each for the published numbers.
TRIALS = 3
LIMIT_SECONDS = 1.0

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def gateways(topology: Topology) -> Deployment:
    """Two gateways of two workers on an isolated schema and Redis prefix, with subjects."""
    topology.deployment.prepare(KINDS, TRIALS)
    return topology.deployment


@pytest.mark.parametrize("kind", KINDS)
def test_change_reaches_every_worker_within_a_second(gateways: Deployment, kind: str) -> None:
    report: KindReport = run_kind(gateways, kind, TRIALS, progress_printer(sys.stdout))
    print(table([report]))
    assert report.max_delay <= LIMIT_SECONDS, explain(report)
    assert report.max_delay_from_record <= LIMIT_SECONDS, explain(report)
