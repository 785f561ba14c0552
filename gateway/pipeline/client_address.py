"""The client's address: the peer, or the X-Forwarded-For hop just before the first trusted
proxy when the peer is a configured proxy (never a value a client can choose)."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from functools import lru_cache

from flask import request

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@lru_cache(maxsize=16)
def _networks(trusted: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(item, strict=False) for item in trusted)


def _is_trusted(address: str, networks: Sequence[Network]) -> bool:
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(parsed in network for network in networks)


def client_address(trusted_proxies: tuple[str, ...]) -> str | None:
    """The address to audit and to limit unauthenticated traffic by."""
    peer = request.remote_addr
    networks = _networks(trusted_proxies)
    if peer is None or not networks or not _is_trusted(peer, networks):
        return peer
    hops = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",")]
    for hop in reversed([h for h in hops if h]):
        if not _is_trusted(hop, networks):
            return hop[:64]
    return peer
