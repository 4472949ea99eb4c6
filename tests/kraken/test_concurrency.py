"""Nonces reach the exchange in strictly increasing order however many threads call (send order, not just values)."""
from __future__ import annotations

import json
import threading
from urllib.parse import parse_qsl

import pytest

from triplegain_fsm.kraken.client import KrakenClient

pytestmark = pytest.mark.integration


def run_threads(count, target):
    barrier = threading.Barrier(count)
    errors = []

    def body():
        barrier.wait()
        try:
            target()
        except Exception as exc:   # surfaced by the assertion below, never swallowed
            errors.append(exc)

    threads = [threading.Thread(target=body) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_eight_threads_nonces_strictly_increase_in_the_order_the_server_sees_them(kx, mock, clock):
    client = KrakenClient(kx.API_KEY, kx.API_SECRET, clock=clock, sleep=lambda s: None, tier="pro")
    seen: list[int] = []   # appended by the server callback, in arrival order

    def server(request):
        seen.append(int(dict(parse_qsl(request.body.decode()))["nonce"]))
        return 200, {}, json.dumps({"error": [], "result": {"open": {}}})

    mock.add_callback("POST", kx.private_url("OpenOrders"), callback=server)
    mock.add_callback("POST", kx.private_url("CancelOrder"), callback=lambda r: (
        seen.append(int(dict(parse_qsl(r.body.decode()))["nonce"])) or
        (200, {}, json.dumps({"error": [], "result": {"count": 1}}))))

    def work():
        for i in range(25):
            if i % 5 == 0:
                client.cancel_order(txid="OA", order_age=1000)
            else:
                client.open_orders()

    run_threads(8, work)
    assert len(seen) == 200
    assert all(a < b for a, b in zip(seen, seen[1:], strict=False)), "a nonce reached the server out of order"


def test_two_clients_with_one_key_share_the_nonce_lane(kx, mock, clock):
    a = KrakenClient(kx.API_KEY, kx.API_SECRET, clock=clock, sleep=lambda s: None, tier="pro")
    b = KrakenClient(kx.API_KEY, kx.API_SECRET, clock=clock, sleep=lambda s: None, tier="pro")
    seen: list[int] = []
    mock.add_callback("POST", kx.private_url("Balance"), callback=lambda r: (
        seen.append(int(dict(parse_qsl(r.body.decode()))["nonce"])) or (200, {}, '{"error": [], "result": {}}')))

    def work():
        for _ in range(10):
            a.private("Balance")
            b.private("Balance")

    run_threads(4, work)
    assert len(seen) == 80 and all(x < y for x, y in zip(seen, seen[1:], strict=False))
