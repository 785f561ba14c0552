"""Answers handed to the server whole. Flask returns every response as an iterator, and granian
(its WSGI interface, and the buffering front's RSGI one) streams an iterator: the status line and
headers are written first, the body when the worker's thread yields it. A replica killed in
between left nginx a 200 whose body never came, which nginx could only cut off; and every
answer of the buffering front took two more trips to a thread for its body.

An answer whose length Flask knows (it set Content-Length: everything but the audit exports) is
joined here and returned as a one-item list, which granian writes in one piece. Streamed
answers (no Content-Length) and large ones still stream."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# Past this an answer streams even with a known length (none of predgate's JSON answers is
# near it; a large static file would be).
WHOLE_UP_TO_BYTES = 1 << 20


class WholeAnswers:
    """WSGI middleware: a buffered answer becomes `[body]`; a streamed one passes unchanged."""

    def __init__(self, app: WSGIApplication) -> None:
        self._app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        length: list[int | None] = [None]

        def starting(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], object]:
            length[0] = _content_length(headers)
            return start_response(status, headers, exc_info)

        result: Iterable[bytes] = self._app(environ, starting)
        if isinstance(result, list) or length[0] is None or length[0] > WHOLE_UP_TO_BYTES:
            return result
        try:
            body = b"".join(result)
        finally:
            close: Callable[[], None] | None = getattr(result, "close", None)
            if close is not None:
                close()  # PEP 3333: the server would have; the answer is complete
        return [body]


def _content_length(headers: list[tuple[str, str]]) -> int | None:
    for name, value in headers:
        if name.lower() == "content-length":
            return int(value) if value.isdigit() else None
    return None
