"""The shipped nginx configuration run as a process on loopback.

The compose image includes deploy/nginx.conf inside the http {} block of its own nginx.conf.
`image_main_conf` is that file (nginx:1.28's, with its paths moved into a private directory),
and `adapt` changes the shipped file only mechanically, each change named and required to
match, so that what runs is what ships:

- the `resolver` lines go: Debian's nginx (1.22) has no `resolve` on upstream servers, and
  loopback replicas have fixed addresses;
- `server gateway:8000 resolve PARAMS;` becomes one `server 127.0.0.1:PORT PARAMS;` per replica,
  with the same PARAMS;
- `listen N` becomes `listen 127.0.0.1:PORT`;
- /var/log/nginx/ and /etc/nginx/certs/ become private directories;
- `http2 on;` goes (1.22 has no `http2` directive; HTTP/1.1 is what the tests speak).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.pg_support import free_port

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "deploy" / "nginx.conf"
SHIPPED_TLS = ROOT / "deploy" / "nginx-tls.conf"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def nginx_binary() -> str:
    """Debian's nginx, as scripts/install-test-tools installs it."""
    found = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(found).exists():
        raise AssertionError("nginx is missing: run scripts/install-test-tools (make test does)")
    return found


def _replace(text: str, pattern: str, replacement: str, what: str) -> str:
    changed, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
    if count == 0:
        raise AssertionError(f"the shipped nginx configuration no longer has {what}")
    return changed


def adapt(
    shipped: str,
    *,
    upstream_ports: list[int],
    listen: dict[int, int],
    logs: Path,
    certs: Path | None = None,
) -> str:
    """The shipped server-level file with the mechanical changes listed in the module doc."""
    text = _replace(shipped, r"^\s*resolver(_timeout)?\s[^;]*;\n", "", "a resolver")
    match = re.search(r"^(\s*)server gateway:8000 resolve\b([^;]*);$", text, flags=re.MULTILINE)
    if match is None:
        raise AssertionError("the shipped upstream no longer has `server gateway:8000 resolve`")
    indent, params = match.group(1), match.group(2)
    servers = "\n".join(f"{indent}server 127.0.0.1:{port}{params};" for port in upstream_ports)
    text = text[: match.start()] + servers + text[match.end() :]
    for shipped_port, port in listen.items():
        text = _replace(
            text, rf"^(\s*)listen {shipped_port}\b", rf"\1listen 127.0.0.1:{port}", "its listen"
        )
    text = _replace(text, r"/var/log/nginx/", f"{logs}/", "logs under /var/log/nginx")
    if certs is not None:
        text = _replace(text, r"/etc/nginx/certs/", f"{certs}/", "certificates")
        text = _replace(text, r"^\s*http2 on;\n", "", "`http2 on`")
    return text


def image_main_conf(root: Path, logs: Path) -> str:
    """The nginx:1.28 image's /etc/nginx/nginx.conf, its paths moved under `root`: including its
    `main` log format (the full request line) at the http level, which the shipped file must
    override for every request."""
    # Started by root, nginx would run its workers as `nobody`, who cannot enter pytest's
    # private temporary directories.
    user = f"user {pwd.getpwuid(os.geteuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temp = "\n".join(
        f"    {kind}_temp_path {root / 'temp' / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"""{user}worker_processes auto;
error_log {logs}/error.log notice;
pid {root}/nginx.pid;
events {{
    worker_connections 1024;
}}
http {{
    default_type application/octet-stream;
    log_format main '$remote_addr - $remote_user [$time_local] "$request" '
                    '$status $body_bytes_sent "$http_referer" '
                    '"$http_user_agent" "$http_x_forwarded_for"';
    access_log {logs}/access.log main;
    sendfile on;
    keepalive_timeout 65;
{temp}
    include {root}/conf.d/*.conf;
}}
"""


class Nginx:
    """nginx in the foreground (`daemon off`) with a private prefix, pid file and logs."""

    def __init__(self, root: Path, *, listen: list[int] | None = None) -> None:
        self.root = root
        self.logs = root / "logs"
        self.certs = root / "certs"
        self.ports = listen or [free_port()]
        self.process: subprocess.Popen[bytes] | None = None
        for folder in (self.logs, self.certs, root / "conf.d", root / "temp"):
            folder.mkdir(parents=True, exist_ok=True)

    @property
    def port(self) -> int:
        """The first port it listens on."""
        return self.ports[0]

    @property
    def base(self) -> str:
        """http://127.0.0.1:PORT of the first port."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, server_conf: str) -> None:
        """Write the configuration, check it (`nginx -t`) and run it until it accepts."""
        (self.root / "conf.d" / "default.conf").write_text(server_conf)
        main_conf = self.root / "nginx.conf"
        main_conf.write_text(image_main_conf(self.root, self.logs))
        command = [nginx_binary(), "-p", str(self.root), "-c", str(main_conf)]
        checked = subprocess.run(
            [*command, "-t"], capture_output=True, text=True, timeout=30, check=False
        )
        if checked.returncode != 0:
            raise AssertionError(f"nginx -t refused the configuration:\n{checked.stderr}")
        with (self.root / "nginx.out").open("ab") as out:
            self.process = subprocess.Popen(
                [*command, "-g", "daemon off;"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its workers are killed with it if it lingers
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not all(_accepts(port) for port in self.ports):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"nginx did not start:\n{self.log_text()}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Fast shutdown (SIGTERM); SIGKILL to its process group if it lingers."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=STOP_TIMEOUT)
        self.process = None

    def log_text(self) -> str:
        """Everything nginx wrote: its access and error logs and its own output."""
        paths = [*sorted(self.logs.glob("*")), self.root / "nginx.out"]
        return "\n".join(path.read_text(errors="replace") for path in paths if path.exists())


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False
