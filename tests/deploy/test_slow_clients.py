"""Slow clients never starve the workers: for WINDOW_SECONDS, SLOW_CONNECTIONS connections to a
`predgate serve --workers 2` replica directly and as many to the shipped nginx send their headers
or bodies a byte at a time (reconnecting when the server drops them), while /healthz and a
prediction, each on a new connection, keep answering within 1 s. Both targets share one window;
nginx fronts the other replica. nginx also drops a client that stops sending its headers or its
body within its 10 s timeouts.

Reached directly, granian reads headers in its Rust runtime (and drops a client that takes more
than 10 s over them), and predgate's front (gateway/front.py) reads each body on the worker's
event loop before a thread runs the request, answering 408 when it does not arrive in time; the
slow bodies carry a valid key, so the app would otherwise read them on its threads."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
import requests

from gateway.server import HEADER_READ_TIMEOUT_MS
from tests.deploy.nginx import SHIPPED, Nginx, adapt
from tests.deploy.topology import Topology

pytestmark = pytest.mark.slow

# Past the 10 s timeouts by half again: the window sees the servers drop the slow clients and
# them reconnect, and holds a body that drips for longer than client_body_timeout.
WINDOW_SECONDS = 15.0
SLOW_CONNECTIONS = 30  # per target: half send headers slowly, half a body
DRIP_SECONDS = 1.0  # one piece every second: inside every per-read timeout
PROBE_INTERVAL = 0.5
PROBE_TIMEOUT = 5.0
ANSWER_WITHIN = 1.0
STALLED = 2  # per kind, through nginx only: clients that stop sending altogether
NGINX_TIMEOUT = 10.0  # client_header_timeout and client_body_timeout of deploy/nginx.conf
DROP_SLACK = 3.0
BODY = b'{"area": 120, "rooms": 2, "bathrooms": 1, "location": 1}'
PREDICTION = {"area": 120, "rooms": 2, "bathrooms": 1, "location": 1}


@dataclass
class Target:
    """One address under slow clients, and what was measured there."""

    name: str
    port: int
    api_key: str
    probes: list[tuple[str, float, int | str]] = field(default_factory=list)  # path, s, status
    open_counts: list[int] = field(default_factory=list)  # slow connections open, per probe
    lifetimes: dict[str, list[float]] = field(default_factory=dict)  # kind -> dropped after s
    open_now: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def dropped(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.lifetimes.setdefault(kind, []).append(seconds)

    def opened(self, change: int) -> None:
        with self.lock:
            self.open_now += change

    def summary(self) -> str:
        """Answers and latencies per probed path, and the slow connections held."""
        parts = []
        for path in ("/healthz", "/v1/predict"):
            seen = [(seconds, status) for kind, seconds, status in self.probes if kind == path]
            ok = sum(status == 200 for _, status in seen)
            worst = max((seconds for seconds, _ in seen), default=0.0)
            parts.append(f"{path}: {ok}/{len(seen)} answered 200, max {worst * 1000:.0f} ms")
        drops = {kind: f"{len(s)} x ~{min(s):.1f}s" for kind, s in self.lifetimes.items() if s}
        held = min(self.open_counts, default=0)
        return f"{self.name}: {'; '.join(parts)}; >= {held} slow connections open; drops {drops}"


@dataclass
class SlowClient:
    """One connection sending a request a piece every DRIP_SECONDS; a new one when dropped."""

    target: Target
    kind: str  # "headers" or "body"; "stalled-headers"/"stalled-body" send one piece only
    stop: threading.Event
    credential: bool = True  # whether the request carries the target's valid key

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                connection = socket.create_connection(("127.0.0.1", self.target.port), timeout=5)
            except OSError:
                self.stop.wait(DRIP_SECONDS)
                continue
            self.target.opened(1)
            began = time.monotonic()
            try:
                if self._hold(connection):
                    self.target.dropped(self.kind, time.monotonic() - began)
            finally:
                self.target.opened(-1)
                connection.close()

    def _hold(self, connection: socket.socket) -> bool:
        """Send until stopped (False) or until the server drops the connection (True)."""
        pieces = self._pieces()
        for piece in pieces:
            if self.stop.is_set():
                return False
            try:
                if piece:
                    connection.sendall(piece)
                readable, _, _ = select.select([connection], [], [], DRIP_SECONDS)
                if readable:
                    return True  # an answer (408, 400...) or the end of the connection
            except OSError:
                return True
        return False

    def _pieces(self) -> Iterator[bytes]:
        yield b"POST /v1/predict HTTP/1.1\r\nHost: slow.example.test\r\n"
        if self.kind.endswith("headers"):
            while True:  # never completes the headers
                yield b"" if self.kind.startswith("stalled") else b"X-Slow: a\r\n"
        credential = f"Authorization: Bearer {self.target.api_key}\r\n" if self.credential else ""
        yield (
            f"{credential}Content-Type: application/json\r\n"
            f"Content-Length: {len(BODY) * 100}\r\n\r\n"
        ).encode()
        while True:  # never completes the body
            for byte in BODY:
                yield b"" if self.kind.startswith("stalled") else bytes([byte])


def _probe(target: Target, stop: threading.Event) -> None:
    """/healthz and a prediction, each on a new connection, every PROBE_INTERVAL."""
    headers = {"Authorization": f"Bearer {target.api_key}", "Connection": "close"}
    base = f"http://127.0.0.1:{target.port}"
    while not stop.is_set():
        started = time.monotonic()
        for path in ("/healthz", "/v1/predict"):
            sent = time.monotonic()
            status: int | str
            try:
                if path == "/healthz":
                    answer = requests.get(base + path, headers=headers, timeout=PROBE_TIMEOUT)
                else:
                    answer = requests.post(
                        base + path, json=PREDICTION, headers=headers, timeout=PROBE_TIMEOUT
                    )
                status = answer.status_code
            except requests.RequestException as exc:
                status = type(exc).__name__
            target.probes.append((path, time.monotonic() - sent, status))
        target.open_counts.append(target.open_now)
        stop.wait(max(0.0, PROBE_INTERVAL - (time.monotonic() - started)))


@pytest.fixture(scope="module")
def slow_window(topology: Topology, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Target]:
    """Run the window once for both targets; what each measured."""
    direct, behind = topology.deployment.gateways
    # The shipped nginx in front of the other replica only, so that what the slow clients do
    # to the replica reached directly cannot show behind nginx.
    nginx = Nginx(tmp_path_factory.mktemp("slow-clients"))
    nginx.start(
        adapt(
            SHIPPED.read_text(),
            upstream_ports=[behind.port],
            listen={8000: nginx.port},
            logs=nginx.logs,
        )
    )
    try:
        return _run_window(
            {
                "direct": Target("predgate serve --workers 2", direct.port, topology.api_key),
                "nginx": Target("behind nginx", nginx.port, topology.api_key),
            }
        )
    finally:
        nginx.stop()


def _run_window(targets: dict[str, Target]) -> dict[str, Target]:
    stop = threading.Event()
    kinds = ["headers", "body"] * (SLOW_CONNECTIONS // 2)
    clients = [SlowClient(target, kind, stop) for target in targets.values() for kind in kinds]
    clients += [
        SlowClient(targets["nginx"], kind, stop)
        for kind in ("stalled-headers", "stalled-body")
        for _ in range(STALLED)
    ]
    threads = [threading.Thread(target=client.run, daemon=True) for client in clients]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while any(target.open_now < SLOW_CONNECTIONS for target in targets.values()):
        assert time.monotonic() < deadline, "the slow connections could not all be opened"
        time.sleep(0.05)
    probes = [
        threading.Thread(target=_probe, args=(target, stop), daemon=True)
        for target in targets.values()
    ]
    for thread in probes:
        thread.start()
    time.sleep(WINDOW_SECONDS)
    stop.set()
    for thread in [*probes, *threads]:
        thread.join(timeout=PROBE_TIMEOUT * 2 + DRIP_SECONDS)
    for target in targets.values():
        print(f"\n{target.summary()}")
    return targets


def _assert_answered(target: Target) -> None:
    late = [(path, round(s, 3), status) for path, s, status in target.probes if s >= ANSWER_WITHIN]
    failed = [(path, round(s, 3), status) for path, s, status in target.probes if status != 200]
    assert not failed, f"{target.summary()}\nnot answered 200: {failed[:10]}"
    assert not late, f"{target.summary()}\nslower than {ANSWER_WITHIN} s: {late[:10]}"
    assert len(target.probes) >= 2 * WINDOW_SECONDS / PROBE_INTERVAL * 0.8, target.summary()
    # The pressure held all along: the slow connections were open while the probes ran.
    assert min(target.open_counts) >= SLOW_CONNECTIONS * 0.8, target.summary()


def test_slow_clients_do_not_starve_a_replica_reached_directly(
    slow_window: dict[str, Target],
) -> None:
    target = slow_window["direct"]
    _assert_answered(target)
    # granian drops a client still sending its headers after 10 s (HEADER_READ_TIMEOUT_MS).
    lifetimes = target.lifetimes.get("headers", [])
    assert lifetimes, f"the server dropped no slow-header connection: {target.summary()}"
    assert max(lifetimes) <= HEADER_READ_TIMEOUT_MS / 1000 + DROP_SLACK, lifetimes


def test_slow_clients_do_not_starve_the_replicas_behind_nginx(
    slow_window: dict[str, Target],
) -> None:
    target = slow_window["nginx"]
    _assert_answered(target)
    # A client that stops sending (or sends its headers for too long) is dropped by nginx.
    for kind in ("headers", "stalled-headers", "stalled-body"):
        lifetimes = target.lifetimes.get(kind, [])
        assert lifetimes, f"nginx dropped no {kind} connection: {target.summary()}"
        assert max(lifetimes) <= NGINX_TIMEOUT + DROP_SLACK, f"{kind}: {lifetimes}"
    # A body sent a byte a second stays within client_body_timeout: held, never dropped.
    assert not target.lifetimes.get("body"), target.summary()
