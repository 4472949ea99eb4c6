"""Idempotent AddOrder: an order whose answer is lost is looked up, never resent blindly."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
import requests

from triplegain_fsm.enums import OrderSide, OrderType
from triplegain_fsm.errors import ValidationError
from triplegain_fsm.kraken import errors as E
from triplegain_fsm.kraken.client import KrakenClient
from triplegain_fsm.kraken.order_request import Offset, OrderRequest
from triplegain_fsm.kraken.retry import set_testing
from triplegain_fsm.kraken.signing import sign

pytestmark = pytest.mark.integration
CL = "0f6b0c36-8d1f-4a57-9d43-5a8b7c2e9f10"


class FakeKraken:
    """A stateful exchange behind responses: AddOrder behaves as scripted, look-ups see what was placed.

    Scripted AddOrder behaviours:
      "ok"    accept and answer
      "lose"  accept, then the answer is lost (ReadTimeout)
      "drop"  lost before reaching the engine (ReadTimeout, nothing placed)
      "500"   HTTP 500, nothing placed
      "junk"  accept, answer with a non-JSON body
      "E..."  answer with that Kraken error, nothing placed
    """

    def __init__(self, kx, mock, clock, script=(), lookups_fail=False, fill_immediately=False):
        self.kx, self.clock = kx, clock
        self.script = list(script)
        self.orders: dict[str, dict] = {}
        self.add_bodies: list[dict] = []
        self.lookup_times: list[float] = []
        self.fill_immediately = fill_immediately
        mock.add_callback("POST", kx.private_url("AddOrder"), callback=self.add_order)
        if lookups_fail:
            mock.post(kx.private_url("OpenOrders"), status=503)
        else:
            mock.add_callback("POST", kx.private_url("OpenOrders"), callback=self.lookup("open"))
            mock.add_callback("POST", kx.private_url("ClosedOrders"), callback=self.lookup("closed"))
        mock.assert_all_requests_are_fired = False   # which look-ups run depends on the scenario

    def add_order(self, request):
        params = self.kx.form(request)
        self.add_bodies.append(params)
        mode = self.script.pop(0) if self.script else "ok"
        if mode.startswith("E"):
            return 200, {}, json.dumps({"error": [mode]})
        if mode == "500":
            return 500, {}, "Internal Server Error"
        if mode == "drop":
            raise requests.exceptions.ReadTimeout("lost before the engine")
        txid = f"OTX{len(self.orders) + 1:03d}-AAAAA-BBBBBB"
        descr = f"{params['type']} {params['volume']} {params['pair']} @ {params['ordertype']}"
        self.orders[txid] = {"status": "closed" if self.fill_immediately else "open", "cl_ord_id": params["cl_ord_id"],
                             "opentm": self.clock.now, "descr": {"order": descr, "pair": params["pair"]}}
        if mode == "lose":
            raise requests.exceptions.ReadTimeout("answer lost after the engine accepted")
        if mode == "junk":
            return 200, {}, "<html>oops</html>"
        return 200, {}, json.dumps({"error": [], "result": {"descr": {"order": descr}, "txid": [txid]}})

    def lookup(self, which):
        def answer(request):
            self.lookup_times.append(self.clock.now)
            wanted = self.kx.form(request).get("cl_ord_id")
            rows = {t: o for t, o in self.orders.items()
                    if (o["status"] == "open") == (which == "open") and o["cl_ord_id"] == wanted}
            return 200, {}, json.dumps({"error": [], "result": {which: rows}})
        return answer


def order(**kw):
    fields = {"pair": "BTC/USD", "side": OrderSide.BUY, "order_type": OrderType.LIMIT, "volume": Decimal("0.5"),
              "cl_ord_id": CL, "limit_price": Decimal("30000.1")}
    return OrderRequest(**{**fields, **kw})


def test_lost_answer_after_accept_sends_exactly_one_add_order(kx, mock, client, clock):
    fake = FakeKraken(kx, mock, clock, script=["lose"])
    ack = client.add_order(order())
    assert len(fake.add_bodies) == 1                       # never resent
    assert ack.txid == "OTX001-AAAAA-BBBBBB" and ack.recovered is True
    assert ack.description == "buy 0.5 XBTUSD @ limit"
    assert len(fake.orders) == 1


def test_lost_answer_of_an_order_that_filled_at_once_is_found_in_closed_orders(kx, mock, client, clock):
    fake = FakeKraken(kx, mock, clock, script=["lose"], fill_immediately=True)
    ack = client.add_order(order(order_type=OrderType.MARKET, limit_price=None))
    assert ack.recovered and ack.txid in fake.orders and len(fake.add_bodies) == 1


@pytest.mark.parametrize("first", ["drop", "500", "EService:Unavailable", "EService:Busy",
                                   "EGeneral:Internal error", "EGeneral:Brand new error"])
def test_not_found_after_the_deadline_means_not_placed_so_it_is_resent_once(kx, mock, client, clock, first):
    fake = FakeKraken(kx, mock, clock, script=[first, "ok"])
    start = clock.now
    ack = client.add_order(order())
    assert len(fake.add_bodies) == 2 and len(fake.orders) == 1
    assert ack.recovered is False and ack.txid == "OTX001-AAAAA-BBBBBB"
    first_deadline = datetime.fromisoformat(fake.add_bodies[0]["deadline"].replace("Z", "+00:00")).timestamp()
    second_deadline = datetime.fromisoformat(fake.add_bodies[1]["deadline"].replace("Z", "+00:00")).timestamp()
    assert first_deadline == pytest.approx(start + 5, abs=0.01)
    assert second_deadline > first_deadline
    assert max(fake.lookup_times) >= first_deadline + 3       # "not found" concluded only after deadline + margin
    assert int(fake.add_bodies[1]["nonce"]) > int(fake.add_bodies[0]["nonce"])
    assert fake.add_bodies[0]["cl_ord_id"] == fake.add_bodies[1]["cl_ord_id"] == CL


def test_junk_answer_after_accept_is_recovered(kx, mock, client, clock):
    fake = FakeKraken(kx, mock, clock, script=["junk"])
    ack = client.add_order(order())
    assert ack.recovered and len(fake.add_bodies) == 1


def test_gives_up_as_not_placed_after_max_submissions(kx, mock, client, clock):
    fake = FakeKraken(kx, mock, clock, script=["drop", "drop", "ok"])
    with pytest.raises(E.SubmissionNotPlaced) as info:
        client.add_order(order())
    assert len(fake.add_bodies) == 2 and fake.orders == {}
    assert info.value.order_not_placed and info.value.retry_safe and info.value.cl_ord_id == CL
    assert isinstance(info.value, E.OrderRejected) and isinstance(info.value.cause, E.RequestTimeout)


def test_failing_look_ups_raise_outcome_unknown_with_the_client_id(kx, mock, client, clock):
    fake = FakeKraken(kx, mock, clock, script=["lose"], lookups_fail=True)
    with pytest.raises(E.OrderOutcomeUnknown) as info:
        client.add_order(order())
    assert info.value.cl_ord_id == CL and info.value.outcome_unknown
    assert isinstance(info.value.cause, E.HttpServerError)
    assert len(fake.add_bodies) == 1


def test_auth_failure_during_look_up_stops_at_once(kx, mock, client, clock):
    mock.add_callback("POST", kx.private_url("AddOrder"),
                      callback=lambda r: (_ for _ in ()).throw(requests.exceptions.ReadTimeout()))
    mock.post(kx.private_url("OpenOrders"), **kx.err("EGeneral:Temporary lockout"))
    with pytest.raises(E.OrderOutcomeUnknown) as info:
        client.add_order(order())
    assert isinstance(info.value.cause, E.TemporaryLockout)
    assert len([c for c in mock.calls if "OpenOrders" in c.request.url]) == 1


@pytest.mark.parametrize(("error", "cls"), [
    ("EOrder:Insufficient funds", E.InsufficientFunds), ("EGeneral:Invalid arguments:volume", E.InvalidArguments),
    ("EOrder:Order minimum not met", E.OrderMinimumNotMet), ("EAPI:Invalid signature", E.InvalidSignature),
    ("EGeneral:Temporary lockout", E.TemporaryLockout), ("EService:Market in cancel_only mode", E.MarketCancelOnly),
])
def test_certainly_not_executed_raises_its_class_without_look_up_or_resend(kx, mock, client, clock, error, cls):
    fake = FakeKraken(kx, mock, clock, script=[error])
    with pytest.raises(cls) as info:
        client.add_order(order())
    assert info.value.order_not_placed
    assert len(fake.add_bodies) == 1 and fake.lookup_times == []


def test_trading_rate_limit_is_retried_after_the_pacer_waits(kx, mock, client, clock):
    fake = FakeKraken(kx, mock, clock, script=["EOrder:Rate limit exceeded", "ok"])
    ack = client.add_order(order())
    assert ack.txid and not ack.recovered and len(fake.add_bodies) == 2 and fake.lookup_times == []
    assert clock.sleeps == [pytest.approx(1.0)]   # starter trading counter decays 1/s


def test_throttled_add_order_waits_then_retries_with_a_fresh_deadline(kx, mock, client, clock):
    fake = FakeKraken(kx, mock, clock, script=[f"EService: Throttled: {int(clock.now) + 20}", "ok"])
    client.add_order(order())
    assert clock.sleeps == [pytest.approx(20)]
    assert fake.add_bodies[0]["deadline"] != fake.add_bodies[1]["deadline"]


def test_deadline_elapsed_is_retried_with_a_fresh_deadline(kx, mock, client, clock):
    fake = FakeKraken(kx, mock, clock, script=["EService:Deadline elapsed", "ok"])
    assert client.add_order(order()).txid
    assert len(fake.add_bodies) == 2 and fake.lookup_times == []


def test_wire_body_pair_altname_deadline_and_signature(kx, mock, client, clock):
    fake = FakeKraken(kx, mock, clock)
    client.add_order(order())
    sent = fake.add_bodies[0]
    assert {k: v for k, v in sent.items() if k != "nonce"} == {
        "pair": "XBTUSD", "type": "buy", "ordertype": "limit", "volume": "0.5", "price": "30000.1",
        "cl_ord_id": CL, "oflags": "fciq", "deadline": "2023-11-14T22:13:25.000Z"}
    request = mock.calls[0].request
    assert request.headers["API-Sign"] == sign("/0/private/AddOrder", sent["nonce"], request.body.decode(),
                                               kx.API_SECRET)
    assert datetime(2023, 11, 14, 22, 13, 25, tzinfo=timezone.utc).timestamp() == clock.now + 5


def test_percent_trailing_stop_goes_as_signed_json(kx, mock, client, clock):
    fake = FakeKraken(kx, mock, clock)
    client.add_order(order(order_type=OrderType.TRAILING_STOP, side=OrderSide.SELL, limit_price=None,
                           trailing_offset=Offset(Decimal("2"), percent=True)))
    request = mock.calls[0].request
    assert request.headers["Content-Type"] == "application/json"
    payload = json.loads(request.body)
    assert payload["price"] == "+2%" and payload["ordertype"] == "trailing-stop"
    assert request.headers["API-Sign"] == sign("/0/private/AddOrder", payload["nonce"], request.body.decode(),
                                               kx.API_SECRET)
    assert len(fake.add_bodies) == 1


def test_validate_returns_no_txid_and_is_never_looked_up(kx, mock, client):
    mock.post(kx.private_url("AddOrder"), **kx.ok({"descr": {"order": "buy 0.5 XBTUSD @ limit 30000.1"}}))
    ack = client.add_order(order(validate=True))
    assert ack.txid is None and not ack.recovered and "validate=true" in mock.calls[0].request.body.decode()
    mock.replace("POST", kx.private_url("AddOrder"), status=502)
    with pytest.raises(E.HttpServerError):
        client.add_order(order(validate=True))


def test_too_many_volume_decimals_refused_before_anything_is_sent(mock, client):
    with pytest.raises(E.PrecisionError):
        client.add_order(order(volume=Decimal("0.123456789")))
    with pytest.raises(E.MissingPriceError):
        client.add_order(order(limit_price=None))
    assert len(mock.calls) == 0


def test_waits_switched_off_mean_a_missing_order_stays_unknown(kx, mock, client, clock):
    """Without time passing, "not found" can never be concluded: it stays unknown, never assumed."""
    set_testing(True)
    fake = FakeKraken(kx, mock, clock, script=["drop"])
    with pytest.raises(E.OrderOutcomeUnknown):
        client.add_order(order())
    assert len(fake.add_bodies) == 1 and clock.sleeps == []


def test_submission_settings_are_validated(kx):
    for bad in ({"deadline_seconds": 1}, {"deadline_seconds": 61}, {"max_submissions": 0},
                {"lookup_attempts": 0}):
        with pytest.raises(ValidationError):
            KrakenClient(kx.API_KEY, kx.API_SECRET, **bad)
