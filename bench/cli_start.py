"""CPU cost of starting `predgate` commands that neither train nor compile (run by hand).

Each command runs N times in a fresh process on a migrated instance in a temporary data
directory; the CPU it used (user + sys, from os.wait4's rusage) is reported as a median.
`--tree` compares source trees in one run, e.g. the current one and a `git archive` of HEAD:

    git archive HEAD | tar -x -C /tmp/cli-before
    .venv/bin/python -m bench.cli_start --tree before=/tmp/cli-before --tree after=.

Every tree runs on this interpreter (its PYTHONPATH set to the tree), so only the code differs.
The runs of a command alternate between the trees, so a change in the machine's load meets
them all alike. One untimed run of each command first writes its bytecode, as installing a
package does: a tree fresh from `git archive`, or PYTHONDONTWRITEBYTECODE, would otherwise
time compiling the sources.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

COMMANDS = (
    ("--help",),
    ("--version",),
    ("tenants", "list"),
    ("keys", "list"),
    ("audit", "query", "--limit", "1"),
    ("models", "list"),
)
# The console script's body, run from the tree on PYTHONPATH rather than the installed one.
LAUNCH = "import sys; sys.argv[0] = 'predgate'; from gateway.cli import main; sys.exit(main())"
BUDGET_SECONDS = 0.5


@dataclass(frozen=True)
class Timing:
    """The CPU of N runs of one command in one tree."""

    tree: str
    command: str
    median_cpu: float
    exit_codes: frozenset[int]


def run_once(tree: Path, data_dir: Path, args: tuple[str, ...]) -> tuple[float, int]:
    """CPU seconds (user + sys) and exit status of one `predgate ARGS` process."""
    env = {
        **os.environ,
        "PYTHONPATH": str(tree),
        "PREDGATE_DATA_DIR": str(data_dir),
        "PREDGATE_INSTANCE_ID": "bench",
    }
    env.pop("PREDGATE_DATABASE_URL", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    process = subprocess.Popen(
        [sys.executable, "-c", LAUNCH, *args],
        cwd=data_dir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_utime + usage.ru_stime, process.returncode


def measure(trees: list[tuple[str, Path]], runs: int) -> list[Timing]:
    """Time every command in every tree, each tree on its own fresh, migrated instance."""
    with contextlib.ExitStack() as stack:
        instances = []
        for name, tree in trees:
            tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix=f"predgate-cli-{name}-"))
            _, status = run_once(tree, Path(tmp), ("db", "upgrade"))
            if status != 0:
                raise SystemExit(f"{name}: `predgate db upgrade` failed in {tree}")
            instances.append((name, tree, Path(tmp)))
        samples: dict[tuple[str, tuple[str, ...]], list[tuple[float, int]]] = {}
        for args in COMMANDS:
            for _, tree, data_dir in instances:
                run_once(tree, data_dir, args)  # writes the bytecode; not timed
            for _ in range(runs):
                for name, tree, data_dir in instances:
                    samples.setdefault((name, args), []).append(run_once(tree, data_dir, args))
    return [
        Timing(
            tree=name,
            command="predgate " + " ".join(args),
            median_cpu=statistics.median(cpu for cpu, _ in samples[name, args]),
            exit_codes=frozenset(code for _, code in samples[name, args]),
        )
        for name, _ in trees
        for args in COMMANDS
    ]


def report(timings: list[Timing]) -> None:
    """One line per tree and command: median CPU, exit status, within the budget or not."""
    print(f"{'tree':<8} {'command':<40} {'median CPU':>10}  exit  budget {BUDGET_SECONDS}s")
    for t in timings:
        codes = ",".join(str(c) for c in sorted(t.exit_codes))
        verdict = "ok" if t.median_cpu <= BUDGET_SECONDS else "OVER"
        print(f"{t.tree:<8} {t.command:<40} {t.median_cpu:>9.3f}s  {codes:<5} {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tree",
        action="append",
        metavar="NAME=PATH",
        help="a source tree to time (repeatable); default: this one",
    )
    parser.add_argument("--runs", type=int, default=7, help="runs per command (default 7)")
    options = parser.parse_args()
    specs = options.tree or [f"current={Path(__file__).resolve().parents[1]}"]
    trees = [(name, Path(path).resolve()) for name, _, path in (s.partition("=") for s in specs)]
    report(measure(trees, options.runs))


if __name__ == "__main__":
    main()
