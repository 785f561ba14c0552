"""Load from wrk: POST /v1/predict with the benchmark row, parsed results and wrk's own CPU."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

WRK = shutil.which("wrk") or "/usr/bin/wrk"
SCRIPT = Path(__file__).with_name("predict.lua")
THREADS = 2
CONNECTIONS = 16
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


class LoadError(RuntimeError):
    """wrk failed, or saw a failed response or socket error: the measurement is void."""


@dataclass(frozen=True)
class LoadResult:
    """One wrk run: throughput, latency percentiles and the CPU wrk itself used."""

    requests: int
    seconds: float
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    wrk_cpu_seconds: float
    failed_responses: int  # always 0 from a strict run


def run_wrk(
    url: str, authorization: str, seconds: int, *, strict: bool = True, body: str | None = None
) -> LoadResult:
    """`wrk -t2 -c16 -d<seconds>s --latency` against url (POSTing `body`, else the tutorial
    row); when strict, LoadError unless every answer is 2xx (a warm-up only counts failures)."""
    command = [
        WRK,
        *("-t", str(THREADS), "-c", str(CONNECTIONS), "-d", f"{seconds}s", "--latency"),
        *("-s", str(SCRIPT), url),
    ]
    env = {**os.environ, "BENCH_AUTHORIZATION": authorization}
    if body is not None:
        env["BENCH_BODY"] = body
    with tempfile.TemporaryFile(mode="w+") as output:
        process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            # wait4 instead of wait: it also returns wrk's rusage (its own CPU time).
            _, status, usage = os.wait4(process.pid, 0)
            process.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if process.returncode is None:
                process.kill()
                process.wait()
        output.seek(0)
        text = output.read()
    if process.returncode != 0:
        raise LoadError(f"wrk exited with {process.returncode}:\n{text}")
    return parse_wrk(text, wrk_cpu_seconds=usage.ru_utime + usage.ru_stime, strict=strict)


def parse_wrk(text: str, *, wrk_cpu_seconds: float, strict: bool = True) -> LoadResult:
    """The numbers of wrk's --latency report; when strict, LoadError on any failed response
    or socket error."""
    # wrk counts a status >= 400 as "Non-2xx or 3xx"; every response must be a success.
    failed = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: (.+)", text)
    socket_errors = sum(int(n) for n in re.findall(r"\d+", errors.group(1))) if errors else 0
    if strict and failed:
        raise LoadError(f"wrk saw {failed.group(1)} failed responses:\n{text}")
    if strict and socket_errors:
        raise LoadError(f"wrk saw socket errors ({errors.group(1) if errors else ''}):\n{text}")
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m|h)", text)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not (total and rate):
        raise LoadError(f"unexpected wrk output:\n{text}")
    requests = int(total.group(1))
    if requests == 0:
        raise LoadError(f"wrk completed no request:\n{text}")
    return LoadResult(
        requests=requests,
        seconds=float(total.group(2)) * _UNIT_MS[total.group(3)] / 1000,
        requests_per_second=float(rate.group(1)),
        p50_ms=_percentile_ms(text, "50"),
        p99_ms=_percentile_ms(text, "99"),
        wrk_cpu_seconds=wrk_cpu_seconds,
        failed_responses=(int(failed.group(1)) if failed else 0) + socket_errors,
    )


def _percentile_ms(text: str, percent: str) -> float:
    match = re.search(rf"^\s+{percent}(?:\.\d+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", text, re.MULTILINE)
    if not match:
        raise LoadError(f"no {percent}% latency line in wrk output:\n{text}")
    return float(match.group(1)) * _UNIT_MS[match.group(2)]
