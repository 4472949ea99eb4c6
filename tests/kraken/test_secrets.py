"""The API key and secret never appear in logs, reprs or exception texts, whatever fails."""
from __future__ import annotations

import logging
import traceback

import pytest
import requests

from triplegain_fsm.kraken import errors as E
from triplegain_fsm.kraken.client import KrakenClient

pytestmark = pytest.mark.integration


def assert_clean(kx, text: str) -> None:
    assert kx.API_KEY not in text
    assert kx.API_SECRET not in text
    assert kx.API_SECRET[:20] not in text


def test_repr_and_vars_show_no_secret(kx, client):
    assert_clean(kx, repr(client))
    assert "redacted" in repr(client)
    assert_clean(kx, str(vars(client)))


def test_nothing_leaks_through_logs_or_errors(kx, mock, clock, caplog):
    caplog.set_level(logging.DEBUG)
    client = KrakenClient(kx.API_KEY, kx.API_SECRET, clock=clock, sleep=clock.sleep, max_attempts=2)
    client.pairs = __import__("triplegain_fsm.kraken.pairs", fromlist=["x"]).PairRegistry.from_result(kx.ASSET_PAIRS)
    mock.assert_all_requests_are_fired = False
    mock.post(kx.private_url("Balance"), body=requests.exceptions.ConnectionError(f"reset {kx.API_KEY}"))
    mock.post(kx.private_url("TradeBalance"), body=requests.exceptions.ReadTimeout("timed out"))
    mock.post(kx.private_url("OpenPositions"), status=502, body="bad gateway")
    mock.post(kx.private_url("QueryOrders"), body="not json")
    mock.post(kx.private_url("Ledgers"), json={"error": ["EAPI:Invalid key"]})
    mock.post(kx.private_url("AddOrder"), body=requests.exceptions.ReadTimeout("lost"))
    mock.post(kx.private_url("OpenOrders"), status=500)
    texts = []
    calls = [lambda: client.private("Balance"), lambda: client.private("TradeBalance"),
             lambda: client.open_positions(), lambda: client.private("QueryOrders", txid="OA"),
             lambda: client.private("Ledgers")]
    from decimal import Decimal

    from triplegain_fsm.enums import OrderSide, OrderType
    from triplegain_fsm.kraken.order_request import OrderRequest
    calls.append(lambda: client.add_order(OrderRequest(pair="XBTUSD", side=OrderSide.BUY,
                                                       order_type=OrderType.MARKET, volume=Decimal("1"),
                                                       cl_ord_id="entry-1")))
    for call in calls:
        with pytest.raises(E.KrakenError) as info:
            call()
        texts.append(str(info.value))
        texts.append(repr(info.value))
        texts.append("".join(traceback.format_exception(info.value)))
    texts.append(caplog.text)
    for text in texts:
        assert_clean(kx, text)
    assert "Balance" in caplog.text or "retry" in caplog.text


def test_anonymous_repr(clock):
    assert "api_key=None" in repr(KrakenClient(clock=clock))
