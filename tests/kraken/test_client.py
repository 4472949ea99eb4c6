"""KrakenClient transport: signing, HTTP outcomes as distinct classes, which calls retry, and waiting."""
from __future__ import annotations

import json
from urllib.parse import parse_qsl

import pytest
import requests

from triplegain_fsm.errors import ValidationError
from triplegain_fsm.kraken import errors as E
from triplegain_fsm.kraken.client import KrakenClient
from triplegain_fsm.kraken.retry import set_testing
from triplegain_fsm.kraken.signing import sign

pytestmark = pytest.mark.integration


def signed_correctly(kx, request) -> bool:
    body = request.body.decode()
    nonce = json.loads(body)["nonce"] if body.startswith("{") else dict(parse_qsl(body))["nonce"]
    path = request.path_url
    return request.headers["API-Sign"] == sign(path, nonce, body, kx.API_SECRET)


# --- signing ---------------------------------------------------------------------------

def test_kraken_documented_vector():
    body = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
    secret = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
    assert sign("/0/private/AddOrder", 1616492376594, body, secret) == (
        "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==")


class FixedNonce:
    def next(self):
        return 1616492376594


def test_client_sends_exactly_the_signed_bytes_of_the_vector(kx, mock, client, monkeypatch):
    monkeypatch.setattr(client._lane, "nonces", FixedNonce())
    mock.post(kx.private_url("AddOrder"), **kx.ok({"descr": {"order": "buy 1.25 XBTUSD @ limit 37500"},
                                                   "txid": ["OUF4EM-FRGI2-MQMWZD"]}))
    client.private("AddOrder", ordertype="limit", pair="XBTUSD", price="37500", type="buy", volume="1.25")
    request = mock.calls[0].request
    assert request.body == b"nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
    assert request.headers["API-Sign"] == (
        "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==")
    assert request.headers["API-Key"] == kx.API_KEY
    assert request.headers["Content-Type"].startswith("application/x-www-form-urlencoded")


def test_every_call_has_user_agent_and_timeout(kx, mock, client):
    mock.get(kx.public_url("Time"), **kx.ok({"unixtime": 1}))
    mock.post(kx.private_url("Balance"), **kx.ok({}))
    client.public("Time")
    client.private("Balance")
    for call in mock.calls:
        assert call.request.headers["User-Agent"].startswith("triplegain-fsm/")
        assert call.request.req_kwargs["timeout"] == 10.0


def test_json_body_is_signed_as_sent(kx, mock, client):
    mock.post(kx.private_url("CancelOrderBatch"), **kx.ok({"count": 2}))
    client.private("CancelOrderBatch", json_body=True, orders=["A", "B"], validate="true")
    request = mock.calls[0].request
    assert request.headers["Content-Type"] == "application/json"
    payload = json.loads(request.body)
    assert payload["orders"] == ["A", "B"] and payload["validate"] is True and isinstance(payload["nonce"], int)
    assert signed_correctly(kx, request)


def test_public_needs_no_key_private_does(kx, mock, clock):
    anonymous = KrakenClient(clock=clock, sleep=clock.sleep)
    mock.get(kx.public_url("SystemStatus"), **kx.ok({"status": "online", "timestamp": "x"}))
    assert anonymous.system_status() == "online"
    with pytest.raises(E.MissingCredentials):
        anonymous.private("Balance")


def test_half_credentials_and_bad_secret_refused_without_echoing_them():
    with pytest.raises(ValidationError):
        KrakenClient("key-only")
    with pytest.raises(ValidationError) as info:
        KrakenClient("k", "not base64 !!! SECRETSECRET")
    assert "SECRETSECRET" not in str(info.value)


# --- HTTP outcomes ---------------------------------------------------------------------

@pytest.mark.parametrize("status", [500, 502, 503, 520, 522, 524])
def test_5xx_and_cloudflare_52x_are_http_server_errors(kx, mock, clock, status):
    c = KrakenClient(kx.API_KEY, kx.API_SECRET, clock=clock, sleep=clock.sleep, max_attempts=1)
    mock.post(kx.private_url("Balance"), status=status, body="<html>cloudflare</html>")
    with pytest.raises(E.HttpServerError) as info:
        c.private("Balance")
    assert info.value.status == status and info.value.outcome_unknown


def test_other_status_is_http_error_and_not_retried(kx, mock, client):
    mock.post(kx.private_url("Balance"), status=403, body="forbidden")
    with pytest.raises(E.HttpError) as info:
        client.private("Balance")
    assert not isinstance(info.value, E.HttpServerError) and info.value.status == 403
    assert len(mock.calls) == 1


def test_429_is_retried_for_reads(kx, mock, client, clock):
    mock.post(kx.private_url("Balance"), status=429)
    mock.post(kx.private_url("Balance"), **kx.ok({}))
    assert client.private("Balance") == {}
    assert len(clock.sleeps) == 1


def test_public_rate_limit_saturates_the_public_bucket(kx, mock, client, clock):
    mock.get(kx.public_url("Time"), **kx.err("EAPI:Rate limit exceeded"))
    mock.get(kx.public_url("Time"), **kx.ok({}))
    client.public("Time")
    assert clock.sleeps == [pytest.approx(1.0)] and client.pacer.available() == 15


@pytest.mark.parametrize(("raised", "cls"), [
    (requests.exceptions.ReadTimeout("read timed out"), E.RequestTimeout),
    (requests.exceptions.ConnectTimeout("connect timed out"), E.RequestTimeout),
    (requests.exceptions.ConnectionError("reset by peer"), E.ConnectionFailed),
    (requests.exceptions.ChunkedEncodingError("broken"), E.ConnectionFailed),
    (requests.exceptions.TooManyRedirects("loop"), E.TransportError),
])
def test_transport_failures_map_to_distinct_classes(kx, mock, clock, raised, cls):
    c = KrakenClient(kx.API_KEY, kx.API_SECRET, clock=clock, sleep=clock.sleep, max_attempts=1)
    mock.post(kx.private_url("OpenOrders"), body=raised)
    with pytest.raises(cls) as info:
        c.private("OpenOrders")
    assert type(info.value) is cls and info.value.outcome_unknown
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_every_attempt_that_got_no_answer_is_told_to_the_observers(kx, mock, client):
    """requests' response hooks never see a call that got no answer; telemetry learns of it here,
    once per attempt, and an observer that fails changes nothing the caller is told."""
    seen: list[tuple[str, str]] = []
    client.on_unanswered.extend([lambda method, outcome: seen.append((method, outcome)),
                                 lambda method, outcome: 1 / 0])
    mock.post(kx.private_url("QueryOrders"), body=requests.exceptions.ReadTimeout())
    mock.post(kx.private_url("QueryOrders"), body=requests.exceptions.ConnectionError("refused"))
    mock.post(kx.private_url("QueryOrders"), status=502)
    mock.post(kx.private_url("QueryOrders"), **kx.ok({"OA": {"status": "open"}}))
    assert client.private("QueryOrders", txid="OA") == {"OA": {"status": "open"}}
    assert seen == [("QueryOrders", "timeout"), ("QueryOrders", "connection_failed")]


@pytest.mark.parametrize("body", [
    "<html>not json</html>", "", "[]", '{"result": {}}', '{"error": "EGeneral:x", "result": {}}',
    '{"error": [1], "result": {}}', '{"error": []}', '{"error": [], "result": []}',
])
def test_malformed_bodies(kx, mock, clock, body):
    c = KrakenClient(kx.API_KEY, kx.API_SECRET, clock=clock, sleep=clock.sleep, max_attempts=1)
    mock.post(kx.private_url("Balance"), body=body, status=200)
    with pytest.raises(E.MalformedResponse):
        c.private("Balance")


def test_error_list_is_raised_classified_never_returned(kx, mock, client):
    mock.post(kx.private_url("AddOrder"), json={"error": ["EOrder:Insufficient funds"], "result": {"x": 1}})
    with pytest.raises(E.InsufficientFunds) as info:
        client.private("AddOrder", pair="XBTUSD")
    assert info.value.raw == ("EOrder:Insufficient funds",) and info.value.endpoint == "AddOrder"


def test_numbers_arrive_as_decimal(kx, mock, client):
    from decimal import Decimal
    mock.get(kx.public_url("Time"), json={"error": [], "result": {"x": 0.1, "n": 3}})
    result = client.public("Time")
    assert result["x"] == Decimal("0.1") and isinstance(result["x"], Decimal) and result["n"] == 3


# --- retries ---------------------------------------------------------------------------

def test_reads_retry_with_backoff_and_fresh_nonce(kx, mock, client, clock):
    mock.post(kx.private_url("QueryOrders"), status=502)
    mock.post(kx.private_url("QueryOrders"), body=requests.exceptions.ReadTimeout())
    mock.post(kx.private_url("QueryOrders"), **kx.ok({"OA": {"status": "open"}}))
    assert client.private("QueryOrders", txid="OA") == {"OA": {"status": "open"}}
    assert len(mock.calls) == 3 and len(clock.sleeps) == 2 and all(s > 0 for s in clock.sleeps)
    nonces = [int(dict(parse_qsl(c.request.body.decode()))["nonce"]) for c in mock.calls]
    assert nonces == sorted(set(nonces))
    assert all(signed_correctly(kx, c.request) for c in mock.calls)


@pytest.mark.parametrize("error", ["EService:Unavailable", "EService:Busy", "EGeneral:Internal error"])
def test_reads_retry_on_retry_safe_kraken_errors(kx, mock, client, error):
    mock.post(kx.private_url("OpenOrders"), **kx.err(error))
    mock.post(kx.private_url("OpenOrders"), **kx.ok({"open": {}}))
    assert client.open_orders() == {}


def test_public_reads_retry(kx, mock, client):
    mock.get(kx.public_url("SystemStatus"), status=520)
    mock.get(kx.public_url("SystemStatus"), **kx.ok({"status": "maintenance"}))
    assert client.system_status() == "maintenance"


def test_attempts_are_capped(kx, mock, client, clock):
    mock.post(kx.private_url("Balance"), status=500)
    with pytest.raises(E.HttpServerError):
        client.private("Balance")
    assert len(mock.calls) == 4 and len(clock.sleeps) == 3


def test_total_retry_time_is_capped(kx, mock, clock):
    c = KrakenClient(kx.API_KEY, kx.API_SECRET, clock=clock, sleep=clock.sleep, max_attempts=50,
                     max_retry_seconds=5)
    mock.post(kx.private_url("Balance"), status=500)
    with pytest.raises(E.HttpServerError):
        c.private("Balance")
    assert sum(clock.sleeps) <= 5 and len(mock.calls) < 50


@pytest.mark.parametrize("error", ["EGeneral:Temporary lockout", "EAPI:Invalid nonce", "EAPI:Invalid key",
                                   "EGeneral:Permission denied", "EGeneral:Invalid arguments:txid",
                                   "EGeneral:Something unmapped"])
def test_lockout_auth_and_unmapped_are_never_retried(kx, mock, client, clock, error):
    mock.post(kx.private_url("Balance"), **kx.err(error))
    with pytest.raises(E.KrakenError):
        client.private("Balance")
    assert len(mock.calls) == 1 and clock.sleeps == []


def test_throttled_waits_until_its_timestamp(kx, mock, client, clock):
    mock.post(kx.private_url("Balance"), **kx.err(f"EService: Throttled: {int(clock.now) + 7}"))
    mock.post(kx.private_url("Balance"), **kx.ok({"ZUSD": "10.5"}))
    assert client.private("Balance") == {"ZUSD": "10.5"}
    assert clock.sleeps == [pytest.approx(7)]


def test_throttled_past_the_time_budget_is_raised_without_waiting(kx, mock, client, clock):
    mock.post(kx.private_url("Balance"), **kx.err(f"EService: Throttled: {int(clock.now) + 600}"))
    with pytest.raises(E.Throttled) as info:
        client.private("Balance")
    assert info.value.retry_at == clock.now + 600 and clock.sleeps == []


def test_rest_rate_limit_saturates_the_pacer_then_retries(kx, mock, client, clock):
    mock.post(kx.private_url("Balance"), **kx.err("EAPI:Rate limit exceeded"))
    mock.post(kx.private_url("Balance"), **kx.ok({}))
    client.private("Balance")
    assert clock.sleeps == [pytest.approx(1 / 0.33)]   # the pacer's wait, no extra backoff


def test_add_order_through_private_is_never_retried_on_unknown_outcome(kx, mock, client):
    mock.post(kx.private_url("AddOrder"), status=500)
    with pytest.raises(E.HttpServerError):
        client.private("AddOrder", pair="XBTUSD")
    assert len(mock.calls) == 1


def test_cancel_retries_only_when_certainly_not_executed(kx, mock, client, clock):
    mock.post(kx.private_url("CancelOrder"), **kx.err("EOrder:Rate limit exceeded"))
    mock.post(kx.private_url("CancelOrder"), **kx.ok({"count": 1, "pending": False}))
    assert client.cancel_order(txid="OA", pair="BTC/USD") == {"count": 1, "pending": False}
    assert clock.sleeps == [pytest.approx(8.0)]   # saturated trading counter, cancel of unknown age costs 8
    assert dict(parse_qsl(mock.calls[0].request.body.decode()))["txid"] == "OA"


@pytest.mark.parametrize("failure", [{"status": 500}, {"body": requests.exceptions.ReadTimeout()},
                                     {"json": {"error": ["EService:Busy"]}}])
def test_cancel_and_amend_raise_unknown_outcomes_to_the_caller(kx, mock, client, failure):
    mock.post(kx.private_url("CancelOrder"), **failure)
    mock.post(kx.private_url("AmendOrder"), **failure)
    with pytest.raises(E.KrakenError) as info:
        client.cancel_order(cl_ord_id="entry-1")
    assert info.value.outcome_unknown
    with pytest.raises(E.KrakenError):
        client.amend_order("OA", limit_price=__import__("decimal").Decimal("100"))
    assert len(mock.calls) == 2


def test_set_testing_switches_all_waiting_off(kx, mock, clock):
    set_testing(True)
    c = KrakenClient(kx.API_KEY, kx.API_SECRET, clock=clock, sleep=clock.sleep)
    mock.post(kx.private_url("Balance"), status=500)
    mock.post(kx.private_url("Balance"), **kx.err(f"EService: Throttled: {int(clock.now) + 7}"))
    mock.post(kx.private_url("Balance"), **kx.ok({}))
    c.private("Balance")
    assert len(mock.calls) == 3 and clock.sleeps == []


def test_pacing_makes_the_client_wait_before_kraken_would_refuse(kx, mock, client, clock):
    mock.post(kx.private_url("Balance"), **kx.ok({}))
    for _ in range(15):
        client.private("Balance")
    assert clock.sleeps == []
    client.private("Balance")
    client.private("Balance")
    assert clock.sleeps == [pytest.approx(1 / 0.33), pytest.approx(1 / 0.33)]
    assert client.pacer.available() == pytest.approx(0, abs=1e-9)


def test_unmatched_requests_fail_the_test_instead_of_being_retried(kx, mock, client):
    mock.post(kx.private_url("Balance"), **kx.ok({}))
    client.private("Balance")
    with pytest.raises(kx.UnmatchedRequest):
        client.private("TradeBalance")
