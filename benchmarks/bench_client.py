"""Client-side cost of a signed Kraken request, and the call rate the pacer allows per tier.

Run: python benchmarks/bench_client.py

1. Cost per signed request without the network: a requests transport adapter
   mounted on the client's session answers instantly, so what is measured is
   nonce + encode + HMAC signature + pacer bookkeeping + requests' own session
   overhead + response parsing. The pacer's waits are switched off (sleep is a
   no-op) so the figure is CPU cost, not rate limiting.
2. Sustained calls per second the pacer lets through per tier, on a simulated
   clock (no real waiting), printed next to Kraken's published decay rate.
Figures, not asserts: timings vary by machine.
"""
from __future__ import annotations

import json
import time
from decimal import Decimal

import requests
from requests.adapters import BaseAdapter

from triplegain_fsm.enums import OrderSide, OrderType
from triplegain_fsm.kraken.client import KrakenClient
from triplegain_fsm.kraken.order_request import OrderRequest
from triplegain_fsm.kraken.params import add_order_params
from triplegain_fsm.kraken.ratelimit import TIERS, Pacer
from triplegain_fsm.kraken.signing import sign
from triplegain_fsm.kraken.wire import encode_body

SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
BODY = json.dumps({"error": [], "result": {"ZUSD": "1000.0000", "XXBT": "0.5000000000"}}).encode()


class InstantAdapter(BaseAdapter):
    """Answers every request at once with a canned Kraken success."""

    def send(self, request, **kwargs):
        response = requests.Response()
        response.status_code = 200
        response._content = BODY
        response.headers["Content-Type"] = "application/json"
        response.request, response.url = request, request.url
        return response

    def close(self):
        return None


def per_call_us(fn, n: int) -> float:
    fn()   # warm-up
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e6


def client_costs(n: int = 5000) -> None:
    client = KrakenClient("bench-key", SECRET, tier="pro", sleep=lambda s: None)
    client.session.mount(client.base_url, InstantAdapter())
    req = OrderRequest(pair="XBTUSD", side=OrderSide.BUY, order_type=OrderType.LIMIT, volume=Decimal("1.25"),
                       cl_ord_id="6d1b345e-2821-40e2-ad83-4ecb18a06876", limit_price=Decimal("37500.1"))
    wire = add_order_params(req)
    body = encode_body(1616492376594, wire.params, False)
    pacer = Pacer("pro", sleep=lambda s: None)
    rows = [
        ("add_order_params (OrderRequest -> wire fields)", per_call_us(lambda: add_order_params(req), n)),
        ("encode body (form)", per_call_us(lambda: encode_body(1616492376594, wire.params, False), n)),
        ("sign (HMAC-SHA512 over SHA256)", per_call_us(lambda: sign("/0/private/AddOrder", 1, body, SECRET), n)),
        ("pacer acquire (bookkeeping, no wait)", per_call_us(lambda: pacer.acquire("Balance"), n)),
        ("requests Session.post alone, instant adapter",
         per_call_us(lambda: client.session.post(client.base_url + "/0/private/Balance", data=body), n)),
        ("full private call, instant adapter", per_call_us(lambda: client.private("Balance"), n)),
    ]
    print(f"Client-side cost per signed request (mean of {n}, no network)")
    for name, us in rows:
        print(f"  {name:<48} {us:8.1f} us")


class SimClock:
    """Simulated time: moves only when the pacer sleeps."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def sustained_rate(tier_name: str, method: str, burst: float, calls: int) -> float:
    clock = SimClock()
    pacer = Pacer(tier_name, clock=clock, sleep=clock.sleep)
    for _ in range(calls):
        pacer.acquire(method, pair="XBTUSD")
    return (calls - burst) / clock.now


def pacer_rates(calls: int = 2000) -> None:
    print("\nSustained rate the pacer allows (simulated clock, after the initial burst)")
    print(f"  {'tier':<13} {'REST calls/s':>13} {'Kraken decay/s':>15} {'AddOrder/s per pair':>20} {'Kraken':>8}")
    for name, tier in TIERS.items():
        rest_rate = sustained_rate(name, "OpenOrders", tier.rest_max, calls)
        add_rate = sustained_rate(name, "AddOrder", tier.trading_max, calls)
        print(f"  {name:<13} {rest_rate:13.3f} {tier.rest_decay:15.3f} {add_rate:20.3f} {tier.trading_decay:8.2f}")
    print("  (burst first: REST max 15/20/20, trading max 60/125/180; heavy calls such as TradesHistory "
          "cost 2, so half the rate)")


if __name__ == "__main__":
    client_costs()
    pacer_rates()
