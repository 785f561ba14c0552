"""Forwarding headers, believed only from configured proxies: a request whose peer is in
PREDGATE_TRUSTED_PROXIES passes through Werkzeug's ProxyFix, which takes the client address from
X-Forwarded-For (the last PREDGATE_TRUSTED_PROXY_HOPS entries) and the scheme and host from
X-Forwarded-Proto and -Host; from anyone else those headers change nothing. The issuer and every
URL predgate advertises come from configuration, never from these headers or Host."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from flask import request
from werkzeug.middleware.proxy_fix import ProxyFix

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class TrustedProxies:
    """WSGI middleware: ProxyFix for requests from a trusted proxy, nothing for the rest."""

    def __init__(self, app: WSGIApplication, trusted: tuple[str, ...], *, hops: int) -> None:
        self._app = app
        self._fixed = ProxyFix(app, x_for=hops, x_proto=1, x_host=1, x_port=1)
        self._networks = tuple(ipaddress.ip_network(item, strict=False) for item in trusted)

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        if self._networks and self._trusted(environ.get("REMOTE_ADDR")):
            return self._fixed(environ, start_response)
        return self._app(environ, start_response)

    def _trusted(self, peer: str | None) -> bool:
        try:
            address = ipaddress.ip_address(peer or "")
        except ValueError:
            return False
        return any(address in network for network in self._networks)


def client_address() -> str | None:
    """The address to audit and to limit unauthenticated traffic by (after TrustedProxies)."""
    address = request.remote_addr
    return address[:64] if address else None
