"""The one binding rule of every paper server: loopback only.

The paper exchange accepts a fixed, published key, so it must never be reachable
from the network; the REST and the WebSocket servers both check it here.
"""
from __future__ import annotations

import ipaddress


def check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(f"host: the paper exchange binds to loopback only (127.0.0.1, ::1, localhost), got {host!r}")
