"""The compose topology as processes: two `predgate serve --workers 2` replicas, PostgreSQL,
Redis, and Debian's nginx running deploy/nginx.conf (adapted only mechanically, see
tests.deploy.nginx) in front of them. Through nginx: exact per-key limits, OAuth tokens and
their revocation (refused by every worker within 1 s), the client's address and Host forwarded,
no query string in any nginx log, the TLS example, and a replica SIGKILLed under load costing
under 1 s of errors and no audit record. The replica killed is restarted, so the topology is
whole again for the tests after it."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.deploy.nginx import SHIPPED, SHIPPED_TLS, Nginx, adapt
from tests.deploy.topology import Topology, restart_replica
from tests.faults.conftest import Load, Reply
from tests.pg_support import free_port
from tests.propagation.deployment import AdminApi, Hammer

pytestmark = pytest.mark.slow

REQUEST_TIMEOUT = 15.0
# A credential a careless client put in the query string: no nginx log may ever hold it.
LEAKED = "pgk_00000000deadbeef_QueryStringMustNeverBeLogged"
LIMIT = 20
SENT = 60
REVOKE_WITHIN_SECONDS = 1.0
OBSERVE_SECONDS = 1.5
WARM_SECONDS = 20.0
FAILOVER_SECONDS = 1.0
LOAD_CLIENTS = 6
REJOIN_SECONDS = 20.0


def test_no_query_string_in_any_nginx_log(tmp_path: Path) -> None:
    # Requests nginx itself refuses or cannot pass on: the messages nginx writes about them
    # end with the full request line at the levels the shipped file leaves out.
    shipped = SHIPPED.read_text()
    leaky = shipped.replace("error.log crit;", "error.log info;")
    assert leaky != shipped, "the shipped file no longer sets the error log's level to crit"
    written = {}
    for name, conf in (("shipped", shipped), ("info", leaky)):
        nginx = Nginx(tmp_path / name)
        dead = free_port()  # nothing listens there: a replica that is gone
        nginx.start(adapt(conf, upstream_ports=[dead], listen={8000: nginx.port}, logs=nginx.logs))
        try:
            statuses = _provoke_errors(nginx.port)
        finally:
            nginx.stop()
        assert statuses == [502, 413, 400], f"{name}: nginx answered {statuses}"
        written[name] = nginx.log_text()
    print(f"\nshipped configuration wrote:\n{written['shipped']}")
    assert LEAKED in written["info"], "the scenarios no longer make nginx log a request line"
    assert LEAKED not in written["shipped"], f"a query string in nginx's logs:\n{written}"
    access = [line for line in written["shipped"].splitlines() if '"GET /v1/model' in line]
    assert access, "the access log has no line for the refused request"


def _provoke_errors(port: int) -> list[int]:
    """A request to a dead upstream, a body over the limit, an invalid header; all with a
    credential in the query string. The statuses nginx answered."""
    dead = requests.get(f"http://127.0.0.1:{port}/v1/model?api_key={LEAKED}", timeout=10)
    raw = [
        f"POST /v1/predict?api_key={LEAKED} HTTP/1.1\r\nHost: x\r\n"
        "Content-Length: 999999999\r\n\r\n",
        f"GET /v1/model?api_key={LEAKED} HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n",
    ]
    answers = [dead.status_code]
    for request in raw:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
            connection.sendall(request.encode())
            answers.append(int(connection.recv(64).split()[1]))
    time.sleep(0.2)  # the log lines are written after the answer
    return answers


def test_per_key_limit_is_exact_through_nginx(topology: Topology) -> None:
    _key_id, api_key = topology.issue_key("--rate-limit", f"{LIMIT}/minute")
    url = f"{topology.nginx.base}/v1/predict"

    def predict(_: int) -> requests.Response:
        return requests.post(
            url,
            json={"area": 120, "rooms": 2, "bathrooms": 1, "location": 1},
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=REQUEST_TIMEOUT,
        )

    with ThreadPoolExecutor(max_workers=12) as pool:
        answers = list(pool.map(predict, range(SENT)))
    statuses = Counter(answer.status_code for answer in answers)
    print(f"\n{SENT} simultaneous requests against {LIMIT}/minute through nginx: {statuses}")
    assert statuses == {200: LIMIT, 429: SENT - LIMIT}
    refused = [answer for answer in answers if answer.status_code == 429]
    assert all(answer.json()["code"] == "rate_limited" for answer in refused)
    assert all(int(answer.headers["Retry-After"]) > 0 for answer in refused)
    assert all(answer.headers["X-RateLimit-Limit"] == str(LIMIT) for answer in answers)
    records = topology.audited([answer.headers["X-Request-ID"] for answer in answers])
    got = {answer.headers["X-Request-ID"]: answer.status_code for answer in answers}
    assert {rid: record[0] for rid, record in records.items()} == got
    # Both replicas counted against the one limit: nginx spread the requests over them.
    pids = {record[1] for record in records.values()}
    for gateway in topology.deployment.gateways:
        assert pids & gateway.worker_pids(), f"replica {gateway.name} answered none"


def test_an_over_long_token_is_answered_by_the_gateway_through_nginx(topology: Topology) -> None:
    # 20 KB: past the gateway's 8 KB token limit, within nginx's header buffers, so the answer
    # is the gateway's own audited 401, not a bare 400 page from nginx.
    long_token = "eyJ" + "A" * 20_000
    answer = requests.post(
        f"{topology.nginx.base}/v1/predict",
        json={"area": 120, "rooms": 2, "bathrooms": 1, "location": 1},
        headers={"Authorization": f"Bearer {long_token}"},
        timeout=REQUEST_TIMEOUT,
    )
    assert answer.status_code == 401
    assert answer.json()["code"] == "token_too_large"
    assert answer.headers["WWW-Authenticate"] == 'Bearer realm="predgate", error="invalid_token"'
    request_id = answer.headers["X-Request-ID"]
    assert topology.audited([request_id])[request_id][0] == 401


def test_client_address_scheme_and_host_come_from_nginx(topology: Topology) -> None:
    # Whatever a client writes in X-Forwarded-*, the gateway believes what nginx saw.
    spoofed = {
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "api.example.test",
    }
    bearer = {"Authorization": f"Bearer {topology.api_key}", **spoofed}
    outside = _get_from("127.0.0.2", topology.nginx.port, "/v1/model", bearer)
    inside = _get_from("127.0.0.1", topology.nginx.port, "/v1/model", bearer)
    assert (outside[0], inside[0]) == (200, 200)
    records = topology.audited([outside[1], inside[1]])
    # The address nginx saw, also for a client whose own address is trusted (in compose:
    # another container).
    assert records[outside[1]][2] == "127.0.0.2"
    assert records[inside[1]][2] == "127.0.0.1"

    # Tokens are issued over https only, plain http to a loopback host aside: the scheme and
    # the host the gateway believes decide whether a token is issued.
    running = topology.deployment
    client_id, secret = AdminApi(
        [topology.nginx.base], running.admin.client_id, running.admin.client_secret
    ).create_partner(running.partner_tenant)

    def token(headers: dict[str, str]) -> requests.Response:
        return requests.post(
            f"{topology.nginx.base}/oauth/token",
            auth=(client_id, secret),
            data={"grant_type": "client_credentials"},
            headers=headers,
            timeout=REQUEST_TIMEOUT,
        )

    # The client's Host reached the gateway (a loopback one), not nginx's upstream name nor
    # the X-Forwarded-Host the client sent.
    loopback = token(spoofed)
    assert loopback.status_code == 200, loopback.text
    # A public host over plain http: refused, whatever scheme the client claimed.
    public = token({**spoofed, "Host": "api.example.test"})
    assert (public.status_code, public.json()["code"]) == (400, "https_required")


def _get_from(source: str, port: int, path: str, headers: dict[str, str]) -> tuple[int, str]:
    """GET through nginx from the local address `source`: (status, X-Request-ID)."""
    connection = http.client.HTTPConnection(
        "127.0.0.1", port, timeout=REQUEST_TIMEOUT, source_address=(source, 0)
    )
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status, response.getheader("X-Request-ID") or ""
    finally:
        connection.close()


def test_oauth_token_and_revocation_through_nginx(topology: Topology) -> None:
    running = topology.deployment
    nginx = topology.nginx.base
    admin = AdminApi([nginx], running.admin.client_id, running.admin.client_secret)
    client_id, secret = admin.create_partner(running.partner_tenant)
    issued = requests.post(
        f"{nginx}/oauth/token",
        auth=(client_id, secret),
        data={"grant_type": "client_credentials"},
        timeout=REQUEST_TIMEOUT,
    )
    assert issued.status_code == 200, issued.text
    assert issued.headers["Cache-Control"] == "no-store"
    token = issued.json()["access_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    served = requests.get(f"{nginx}/v1/model", headers=bearer, timeout=REQUEST_TIMEOUT)
    assert served.status_code == 200, served.text

    workers = running.worker_pids()
    with Hammer(running.gateways, "token_revoke", token) as hammer:
        deadline = time.monotonic() + WARM_SECONDS
        while not workers <= running.pids_served(client_id):
            assert time.monotonic() < deadline, "not every worker served the token"
            time.sleep(0.05)
        t0 = time.time()
        revoked = requests.post(
            f"{nginx}/oauth/revoke",
            auth=(client_id, secret),
            data={"token": token},
            timeout=REQUEST_TIMEOUT,
        )
        t1 = time.time()
        time.sleep(OBSERVE_SECONDS)
        seen = hammer.stop()
    assert revoked.status_code == 200, revoked.text
    assert not [answer for answer in seen if answer.answer == "unexpected"]
    served_before = [answer.started for answer in seen if answer.answer == "before"]
    delay = max((started for started in served_before if started >= t0), default=t0) - t0
    refused_by = set(
        running.pids_of(
            [a.request_id for a in seen if a.answer == "after" and a.request_id]
        ).values()
    )
    print(
        f"\nrevoked through nginx in {(t1 - t0) * 1000:.0f} ms; last request still served "
        f"started {delay * 1000:.0f} ms after the revoke was sent; {len(seen)} requests"
    )
    assert delay <= REVOKE_WITHIN_SECONDS
    assert workers <= refused_by, f"workers {sorted(workers - refused_by)} never refused it"
    refused = requests.get(f"{nginx}/v1/model", headers=bearer, timeout=REQUEST_TIMEOUT)
    assert (refused.status_code, refused.json()["code"]) == (401, "token_revoked")


@pytest.fixture
def tls_nginx(topology: Topology, tmp_path: Path) -> Iterator[Nginx]:
    """deploy/nginx-tls.conf in front of the replicas, with a self-signed certificate."""
    nginx = Nginx(tmp_path / "tls", listen=[free_port(), free_port()])
    _self_signed(nginx.certs)
    nginx.start(
        adapt(
            SHIPPED_TLS.read_text(),
            upstream_ports=[gateway.port for gateway in topology.deployment.gateways],
            listen={80: nginx.ports[0], 443: nginx.ports[1]},
            logs=nginx.logs,
            certs=nginx.certs,
        )
    )
    try:
        yield nginx
    finally:
        nginx.stop()


def test_tls_example_serves_https(topology: Topology, tls_nginx: Nginx) -> None:
    https = f"https://127.0.0.1:{tls_nginx.ports[1]}"
    verify = str(tls_nginx.certs / "fullchain.pem")
    health = requests.get(f"{https}/healthz", verify=verify, timeout=REQUEST_TIMEOUT)
    assert health.status_code == 200
    assert health.headers["Strict-Transport-Security"].startswith("max-age=")
    predicted = requests.post(
        f"{https}/v1/predict",
        json={"area": 120, "rooms": 2, "bathrooms": 1, "location": 1},
        headers={"Authorization": f"Bearer {topology.api_key}"},
        verify=verify,
        timeout=REQUEST_TIMEOUT,
    )
    assert predicted.status_code == 200, predicted.text
    plain = requests.get(
        f"http://127.0.0.1:{tls_nginx.ports[0]}/v1/model?limit=1",
        allow_redirects=False,
        timeout=REQUEST_TIMEOUT,
    )
    assert plain.status_code == 308
    assert plain.headers["Location"] == "https://127.0.0.1/v1/model?limit=1"


def test_tls_example_tells_the_gateway_the_scheme(topology: Topology, tls_nginx: Nginx) -> None:
    # A token for a public host name is issued over TLS: the gateway believed nginx's
    # X-Forwarded-Proto (it is in PREDGATE_TRUSTED_PROXIES); over plain http it is refused.
    running = topology.deployment
    client_id, secret = AdminApi(
        [topology.nginx.base], running.admin.client_id, running.admin.client_secret
    ).create_partner(running.partner_tenant)
    issued = requests.post(
        f"https://127.0.0.1:{tls_nginx.ports[1]}/oauth/token",
        auth=(client_id, secret),
        data={"grant_type": "client_credentials"},
        headers={"Host": "api.example.test"},
        verify=str(tls_nginx.certs / "fullchain.pem"),
        timeout=REQUEST_TIMEOUT,
    )
    assert issued.status_code == 200, issued.text
    assert issued.json()["token_type"].lower() == "bearer"


def _self_signed(folder: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "predgate test")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (folder / "fullchain.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "privkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def test_replica_killed_under_load(topology: Topology) -> None:
    running = topology.deployment
    victim = running.gateways[1]
    victim_workers = victim.worker_pids()
    load = Load(topology.nginx.base, topology.api_key, clients=LOAD_CLIENTS)
    load.start()
    try:
        load.wait_for_successes(LOAD_CLIENTS * 5, timeout=30)
        time.sleep(1.0)
        killed_at = time.monotonic()
        os.killpg(victim.process.pid, signal.SIGKILL)  # the replica and all its workers
        victim.process.wait(timeout=10)
        time.sleep(3.0)  # the survivor serves everything
        restarted_at = time.monotonic()
        restart_replica(victim, running.env)
        ready_at = time.monotonic()
        rejoined = _wait_until_served_by(topology, load, victim.worker_pids(), ready_at)
    finally:
        load.stop()
    errors = [reply for reply in load.replies if reply.status != 200]
    answered = {reply.request_id: reply.status for reply in load.replies if reply.request_id}
    records = topology.audited(list(answered))
    unrecorded = [rid for rid, status in answered.items() if records.get(rid, (0,))[0] != status]
    verified = running.cli.run("audit", "verify")
    window = max((reply.at for reply in errors), default=killed_at) - killed_at
    print(
        f"\nreplica SIGKILLed under {LOAD_CLIENTS} clients through nginx: "
        f"{dict(Counter(reply.status for reply in load.replies))}, {len(errors)} errors, "
        f"the last {window * 1000:.0f} ms after the kill; no answer: {dict(load.lost)}; "
        f"restarted replica ready in {ready_at - restarted_at:.1f} s and served through nginx "
        f"{rejoined:.1f} s later; answers without their audit record: {len(unrecorded)}; "
        f"audit verify exit {verified.returncode}"
    )
    served_before = {
        records[rid][1] for rid in answered if rid in records and records[rid][1] in victim_workers
    }
    assert served_before, "the killed replica had answered nothing through nginx"
    assert not load.lost, f"requests nginx gave no answer to: {dict(load.lost)}"
    assert all(killed_at <= reply.at for reply in errors), _describe(errors)
    assert window < FAILOVER_SECONDS, _describe(errors)
    assert not unrecorded, f"answers without their audit record: {unrecorded[:10]}"
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _wait_until_served_by(
    topology: Topology, load: Load, workers: frozenset[int], since: float
) -> float:
    """Seconds from `since` until a load answer came from one of `workers`."""
    deadline = time.monotonic() + REJOIN_SECONDS
    while time.monotonic() < deadline:
        recent = [r.request_id for r in list(load.replies) if r.at >= since and r.request_id]
        pids = {record[1] for record in topology.audited(recent).values()}
        if pids & workers:
            return time.monotonic() - since
        time.sleep(0.2)
    raise AssertionError(f"nginx sent nothing to the restarted replica in {REJOIN_SECONDS:.0f} s")


def _describe(errors: list[Reply]) -> str:
    return "\n".join(f"  {reply.status} at {reply.at:.3f}: {reply.body[:120]}" for reply in errors)
