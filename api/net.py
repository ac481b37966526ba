"""Who is on the other end: the client address, with ``X-Forwarded-For`` believed only from a proxy
we were told to trust (``CONCIERGE_TRUSTED_PROXIES``). Anyone else could write any address into that
header and so dodge a per-client limit or pin one on somebody else.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.requests import HTTPConnection

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(values: Sequence[str]) -> list[Network]:
    """CIDRs or single addresses; raises ValueError naming the bad one."""
    out: list[Network] = []
    for value in values:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"not an IP address or network: {value!r}") from exc
    return out


def _trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in trusted)


def client_address(conn: HTTPConnection, trusted: Sequence[Network]) -> str | None:
    """The peer's address; if the peer is a trusted proxy, the nearest address in X-Forwarded-For that is
    not itself a trusted proxy (read right to left: the left part of the header is the client's say-so)."""
    peer = conn.client.host if conn.client else None
    if peer is None or not trusted or not _trusted(peer, trusted):
        return peer
    hops = [h.strip() for h in ",".join(conn.headers.getlist("x-forwarded-for")).split(",") if h.strip()]
    for hop in reversed(hops):
        if not _trusted(hop, trusted):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer  # garbage from a client the proxy passed on: fall back to the proxy itself
    return hops[0] if hops else peer
