"""GET /docs: a page under a strict Content-Security-Policy whose scripts, styles and images all
come from predgate itself, so it renders with no network: real headless Chromium loads it from
`predgate serve` and finds the API's operations on it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from config import Settings
from tests.ratelimit_support import free_port

PREDGATE = str(Path(sys.executable).with_name("predgate"))
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=10000",
    "--window-size=1280,2000",
    # Console messages (CSP violations among them) go to stderr.
    "--enable-logging=stderr",
    "--v=1",
)
START_SECONDS = 15
RENDER_SECONDS = 20
CONSOLE_ERRORS = ("Content Security Policy", "Failed to load resource", "Uncaught")
# Operations Swagger UI renders from /openapi.json; none of them is in the HTML predgate sends.
OPERATIONS = ("/v1/predict", "/v1/model", "/oauth/token", "/admin/v1/tenants")


class PageParts(HTMLParser):
    """The URLs a page loads, its inline scripts and inline styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline: list[str] = []
        self._script_src: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.urls += [v for k, v in values.items() if k in ("src", "href") and v is not None]
        if "style" in values or tag == "style":
            self.inline.append(f"<{tag} style>")
        self._script_src = values.get("src") or "" if tag == "script" else None

    def handle_data(self, data: str) -> None:
        if self._script_src == "" and data.strip():
            self.inline.append(data)


def _policy(header: str) -> dict[str, set[str]]:
    directives = (part.split() for part in header.split(";") if part.strip())
    return {name: set(values) for name, *values in directives}


def test_docs_page_has_a_strict_content_security_policy(client: FlaskClient) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    policy = _policy(response.headers["Content-Security-Policy"])
    assert policy["default-src"] == {"'none'"}
    for directive in ("script-src", "style-src", "connect-src"):
        assert policy[directive] == {"'self'"}, directive
    assert policy["img-src"] <= {"'self'", "data:"}  # Swagger UI's icons are data: SVGs
    assert policy["frame-ancestors"] == {"'none'"}
    assert policy["base-uri"] == {"'none'"}
    assert policy["object-src"] == {"'none'"}


def test_docs_page_loads_nothing_from_another_origin(client: FlaskClient) -> None:
    page = client.get("/docs")
    parts = PageParts()
    parts.feed(page.get_data(as_text=True))
    assert parts.inline == []  # the start-up script is a file: no 'unsafe-inline' needed
    assert len(parts.urls) >= 3
    for url in parts.urls:
        assert not urlsplit(url).netloc, url
        assert not urlsplit(url).scheme, url
        with client.get(urljoin("http://localhost/docs", url)) as asset:
            assert asset.status_code == 200, url
            assert asset.cache_control.public, url
            assert asset.cache_control.max_age, url
            if url.endswith("docs.js"):
                script = asset.get_data(as_text=True)
                assert "openapi.json" in script
                assert "//" not in script  # no URL of another origin
    assert client.get("/docs/assets/../openapi.json").status_code == 404
    assert client.get("/docs/assets/index.html").status_code == 404


def test_spectree_serves_no_page(app: Flask, client: FlaskClient) -> None:
    # spectree's own pages load Swagger UI, ReDoc and Scalar from CDNs.
    assert not [r.rule for r in app.url_map.iter_rules() if r.endpoint.startswith("openapi")]
    for path in ("/docs/swagger/", "/docs/redoc/", "/docs/scalar/", "/docs/openapi.json"):
        assert client.get(path).status_code == 404, path


@pytest.fixture
def served(settings: Settings, tmp_path: Path) -> Iterator[str]:
    """`predgate serve` on a free loopback port, with this test's database; its base URL."""
    port = free_port()
    env = {
        "PATH": str(Path(sys.executable).parent),
        "PREDGATE_DATA_DIR": str(settings.data_dir),
        "PREDGATE_DATABASE_URL": settings.database_url,
        "PREDGATE_SECRET_KEY": settings.secret_key.decode(),
        "PREDGATE_LOG_LEVEL": "WARNING",
    }
    log = (tmp_path / "serve.log").open("wb")
    server = subprocess.Popen(
        [PREDGATE, "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _answers(f"{base}/healthz"):
            assert server.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, (
                f"predgate serve did not answer in {START_SECONDS} s"
            )
            time.sleep(0.1)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.parametrize("database", ["sqlite"], indirect=True)  # the database plays no part
def test_docs_page_renders_in_headless_chromium(served: str, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: run scripts/install-test-tools (make test does)")
    screenshot = tmp_path / "docs.png"
    result = subprocess.run(
        [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chromium'}",
            f"--screenshot={screenshot}",
            "--dump-dom",
            f"{served}/docs",
        ],
        capture_output=True,
        text=True,
        timeout=RENDER_SECONDS,
        check=False,
    )
    print(f"docs page screenshot: {screenshot}")
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    # Swagger UI ran, fetched /openapi.json and drew an entry per operation: with its scripts
    # on a CDN (unreachable here) the page would stay an empty <div id="swagger-ui">.
    assert 'class="swagger-ui"' in dom
    for path in OPERATIONS:
        assert f'data-path="{path}"' in dom, path
    assert "operations-predictions-post__v1_predict" in dom
    # Nothing blocked by the policy, no asset missing, no script error.
    console = [line for line in result.stderr.splitlines() if ":CONSOLE" in line]
    assert not [line for line in console if any(sign in line for sign in CONSOLE_ERRORS)], console
    assert screenshot.stat().st_size > 10_000
