"""The buffering front: granian's RSGI interface, so a request's body is read on the worker's
event loop and the app (WSGI, on a thread) is called only once the whole body is there.

granian's WSGI interface hands a request to a Python thread before its body has arrived, and
has no body timeout, so clients that send bodies slowly could hold every thread. Here a slow or
stalled body holds nothing but a coroutine: after BODY_SECONDS without the whole body, or past
the largest body any route accepts, the app is called anyway and answers 408 or 413 itself
(problem+json, X-Request-ID, its audit record), as it answers everything else.
"""

from __future__ import annotations

import asyncio
import io
import sys
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication, WSGIEnvironment
    from granian._granian import RSGIHTTPProtocol as HTTPProtocol
    from granian.rsgi import Scope

# The request path refuses a request whose body did not arrive in time (408, see
# gateway.pipeline.bodies); the front only says so in the environ.
BODY_TIMED_OUT = "predgate.body_timed_out"
Response = tuple[int, list[tuple[str, str]], Iterable[bytes]]
SMALL_BODY_BYTES = 1 << 20  # read in one call; a larger one part by part, up to its limit


class BufferingFront:
    """An RSGI app that reads each request whole (within `body_seconds` and `max_body_bytes`),
    then runs `wsgi_app` on one of `threads` threads and sends what it answered."""

    def __init__(
        self,
        wsgi_app: WSGIApplication,
        *,
        threads: int,
        body_limit: Callable[[str, str], int],
        body_seconds: float,
    ) -> None:
        self._app = wsgi_app
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="predgate")
        self._body_limit = body_limit  # (method, path) -> the most a route there accepts
        self._body_seconds = body_seconds

    def __rsgi_del__(self, _loop: asyncio.AbstractEventLoop) -> None:
        self._threads.shutdown(wait=True)

    async def __rsgi__(self, scope: Scope, proto: HTTPProtocol) -> None:
        if scope.proto != "http":
            return
        environ = _environ(scope)
        declared = environ.get("CONTENT_LENGTH")
        chunked = "HTTP_TRANSFER_ENCODING" in environ
        limit = self._body_limit(scope.method, scope.path)
        # No body, or a declared length past the limit (refused by the app unread): read nothing.
        length = int(declared) if declared is not None and declared.isdigit() else None
        if chunked or (length is not None and 0 < length <= limit):
            body, complete = await self._read_body(proto, limit, None if chunked else length)
            environ["wsgi.input"] = io.BytesIO(body)
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            if not complete:
                environ[BODY_TIMED_OUT] = True
        loop = asyncio.get_running_loop()
        status, headers, chunks = await loop.run_in_executor(self._threads, self._call, environ)
        if isinstance(chunks, list):
            proto.response_bytes(status, headers, b"".join(chunks))
            return
        # A streamed answer (an audit export): each chunk is sent as the app yields it.
        transport = proto.response_stream(status, headers)
        iterator = iter(chunks)
        while True:
            chunk = await loop.run_in_executor(self._threads, next, iterator, None)
            if chunk is None:
                return
            await transport.send_bytes(chunk)

    async def _read_body(
        self, proto: HTTPProtocol, limit: int, declared: int | None
    ) -> tuple[bytes, bool]:
        """The body, and whether it arrived whole (no pause of `body_seconds` between parts);
        past `limit`, its first `limit` + 1 bytes, so the app answers 413."""
        if declared is not None and declared <= SMALL_BODY_BYTES:
            # The common case, a small body of known length: read at once, in `body_seconds`.
            try:
                async with asyncio.timeout(self._body_seconds):
                    return await proto(), True
            except TimeoutError:
                return b"", False
        parts: list[bytes] = []
        size = 0
        pending = proto.__aiter__()
        while size <= limit:
            try:
                part = await asyncio.wait_for(pending.__anext__(), self._body_seconds)
            except StopAsyncIteration:
                break
            except TimeoutError:
                return b"".join(parts), False
            parts.append(part)
            size += len(part)
        return b"".join(parts)[: limit + 1], True

    def _call(self, environ: WSGIEnvironment) -> Response:
        started: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], _exc: Any = None) -> Any:
            started[:] = [int(status.split(" ", 1)[0]), headers]
            return _no_write

        result = self._app(environ, start_response)
        if isinstance(result, list):
            return started[0], started[1], result
        # A buffered answer comes as a one-item list (gateway.pipeline.whole_answers), sent in
        # one piece; anything else streams, and is closed (PEP 3333) once sent.
        return started[0], started[1], _closing(result)


def _no_write(_data: bytes) -> None:
    raise RuntimeError("predgate's app never uses the WSGI write() callable")


def _closing(result: Iterable[bytes]) -> Iterable[bytes]:
    try:
        yield from result
    finally:
        close: Callable[[], None] | None = getattr(result, "close", None)
        if close is not None:
            close()


def _environ(scope: Scope) -> WSGIEnvironment:
    """The PEP 3333 environ of an RSGI request (body filled in by the front)."""
    server_host, _, server_port = scope.server.rpartition(":")
    client_host, _, client_port = scope.client.rpartition(":")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope.method,
        "SCRIPT_NAME": "",
        # WSGI strings carry bytes as latin-1; RSGI gives the decoded path.
        "PATH_INFO": scope.path.encode("utf-8").decode("latin-1"),
        "QUERY_STRING": scope.query_string,
        "SERVER_NAME": server_host.strip("[]"),
        "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": f"HTTP/{scope.http_version}",
        "REMOTE_ADDR": client_host.strip("[]"),
        "REMOTE_PORT": client_port,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.scheme,
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in scope.headers.items():
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = f"HTTP_{key}"
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ
