"""add_order_params: one exact wire body per order type (F01), and every refusal before sending."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from triplegain_fsm.enums import OrderSide, OrderType
from triplegain_fsm.errors import ValidationError
from triplegain_fsm.kraken.errors import (
    IncompatibleFlagError,
    KrakenRequestError,
    MissingPriceError,
    PrecisionError,
    UnexpectedPriceError,
)
from triplegain_fsm.kraken.order_request import Offset, OrderRequest
from triplegain_fsm.kraken.params import add_order_params, rfc3339, wire_decimal

pytestmark = pytest.mark.unit

CL = "6d1b345e-2821-40e2-ad83-4ecb18a06876"
D = Decimal


VOLUME = D("1.25")


def req(order_type, side=OrderSide.SELL, volume=VOLUME, **kw):
    return OrderRequest(pair="XBTUSD", side=side, order_type=order_type, volume=volume, cl_ord_id=CL, **kw)


def wire(order_type, **kw):
    return add_order_params(req(order_type, **kw))


BASE = {"pair": "XBTUSD", "type": "sell", "volume": "1.25", "oflags": "fciq"}   # fees in quote, always


def test_market():
    w = wire(OrderType.MARKET)
    assert w.params == {**BASE, "ordertype": "market", "cl_ord_id": CL}
    assert list(w.params) == ["pair", "type", "ordertype", "volume", "oflags", "cl_ord_id"]
    assert w.as_json is False


def test_limit_price_goes_to_price():
    w = wire(OrderType.LIMIT, limit_price=D("37500.0"))
    assert w.params == {**BASE, "ordertype": "limit", "price": "37500", "cl_ord_id": CL}


def test_stop_loss_trigger_goes_to_price_not_price2():
    w = wire(OrderType.STOP_LOSS, trigger_price=D("40000"))
    assert w.params == {**BASE, "ordertype": "stop-loss", "price": "40000", "cl_ord_id": CL}


def test_take_profit_trigger_goes_to_price():
    w = wire(OrderType.TAKE_PROFIT, trigger_price=D("52000.5"))
    assert w.params == {**BASE, "ordertype": "take-profit", "price": "52000.5", "cl_ord_id": CL}


def test_stop_loss_limit_trigger_in_price_limit_in_price2():
    w = wire(OrderType.STOP_LOSS_LIMIT, trigger_price=D("40000"), limit_price=D("39900"))
    assert w.params == {**BASE, "ordertype": "stop-loss-limit", "price": "40000", "price2": "39900",
                        "cl_ord_id": CL}


def test_take_profit_limit_trigger_in_price_limit_in_price2():
    w = wire(OrderType.TAKE_PROFIT_LIMIT, trigger_price=D("52000"), limit_price=D("51950"))
    assert w.params == {**BASE, "ordertype": "take-profit-limit", "price": "52000", "price2": "51950",
                        "cl_ord_id": CL}


def test_trailing_stop_offset_in_price_with_plus():
    w = wire(OrderType.TRAILING_STOP, trailing_offset=Offset(D("150")))
    assert w.params == {**BASE, "ordertype": "trailing-stop", "price": "+150", "cl_ord_id": CL}
    assert w.as_json is False


def test_trailing_stop_percent_offset_is_sent_as_json():
    w = wire(OrderType.TRAILING_STOP, trailing_offset=Offset(D("2.5"), percent=True))
    assert w.params["price"] == "+2.5%" and w.as_json is True


def test_trailing_stop_limit_offsets_with_signs():
    w = wire(OrderType.TRAILING_STOP_LIMIT, trailing_offset=Offset(D("150")), limit_offset=Offset(D("10"), sign="-"))
    assert w.params == {**BASE, "ordertype": "trailing-stop-limit", "price": "+150", "price2": "-10",
                        "cl_ord_id": CL}
    zero = wire(OrderType.TRAILING_STOP_LIMIT, trailing_offset=Offset(D("2"), percent=True),
                limit_offset=Offset(D("0")))
    assert (zero.params["price"], zero.params["price2"], zero.as_json) == ("+2%", "+0", True)


def test_every_order_type_has_a_wire_test():
    tested = {"market", "limit", "stop_loss", "take_profit", "stop_loss_limit", "take_profit_limit",
              "trailing_stop", "trailing_stop_limit"}
    assert {t.name.lower() for t in OrderType} == tested


def test_all_options_together_in_order():
    deadline = datetime(2024, 7, 21, 9, 53, 59, 50_000, tzinfo=timezone.utc)
    w = add_order_params(OrderRequest(
        pair="XBTUSD", side=OrderSide.BUY, order_type=OrderType.LIMIT, volume=D("0.00010000"), cl_ord_id=CL,
        limit_price=D("30000.1"), leverage=3, reduce_only=True, post_only=True, time_in_force="gtc",
        deadline=deadline, validate=True))
    assert w.params == {
        "pair": "XBTUSD", "type": "buy", "ordertype": "limit", "volume": "0.0001", "price": "30000.1",
        "leverage": "3", "reduce_only": "true", "oflags": "fciq,post", "timeinforce": "GTC", "cl_ord_id": CL,
        "deadline": "2024-07-21T09:53:59.050Z", "validate": "true"}


@pytest.mark.parametrize(("order_type", "missing"), [
    (OrderType.LIMIT, "limit_price"), (OrderType.STOP_LOSS, "trigger_price"),
    (OrderType.TAKE_PROFIT, "trigger_price"), (OrderType.STOP_LOSS_LIMIT, "limit_price"),
    (OrderType.TAKE_PROFIT_LIMIT, "trigger_price"), (OrderType.TRAILING_STOP, "trailing_offset"),
    (OrderType.TRAILING_STOP_LIMIT, "limit_offset"),
])
def test_missing_price_is_a_typed_error(order_type, missing):
    full = {"limit_price": D("100"), "trigger_price": D("101"), "trailing_offset": Offset(D("5")),
            "limit_offset": Offset(D("1"))}
    from triplegain_fsm.kraken.params import PRICE_FIELDS
    kw = {k: v for k, v in full.items() if k in PRICE_FIELDS[order_type] and k != missing}
    with pytest.raises(MissingPriceError, match=missing):
        wire(order_type, **kw)


@pytest.mark.parametrize(("order_type", "kw"), [
    (OrderType.MARKET, {"limit_price": D("1")}),
    (OrderType.STOP_LOSS, {"trigger_price": D("1"), "limit_price": D("1")}),   # the F01 mix-up
    (OrderType.LIMIT, {"limit_price": D("1"), "trigger_price": D("1")}),
    (OrderType.TRAILING_STOP, {"trailing_offset": Offset(D("1")), "limit_offset": Offset(D("1"))}),
])
def test_a_price_the_type_does_not_use_is_refused(order_type, kw):
    with pytest.raises(UnexpectedPriceError):
        wire(order_type, **kw)


def test_viqc_only_on_market_buy_without_leverage():
    w = wire(OrderType.MARKET, side=OrderSide.BUY, volume=D("100"), volume_in_quote=True)
    assert w.params["oflags"] == "fciq,viqc" and w.params["volume"] == "100"
    with pytest.raises(IncompatibleFlagError):
        wire(OrderType.MARKET, side=OrderSide.SELL, volume_in_quote=True)
    with pytest.raises(IncompatibleFlagError):
        wire(OrderType.LIMIT, side=OrderSide.BUY, limit_price=D("1"), volume_in_quote=True)
    with pytest.raises(IncompatibleFlagError):
        wire(OrderType.MARKET, side=OrderSide.BUY, volume_in_quote=True, leverage=2)


def test_post_only_only_on_limit():
    with pytest.raises(IncompatibleFlagError):
        wire(OrderType.MARKET, post_only=True)
    with pytest.raises(IncompatibleFlagError):
        wire(OrderType.STOP_LOSS_LIMIT, trigger_price=D("2"), limit_price=D("1"), post_only=True)


def test_leverage_only_above_one_and_reduce_only_only_with_it():
    assert "leverage" not in wire(OrderType.MARKET, leverage=1).params
    assert "leverage" not in wire(OrderType.MARKET, leverage=None).params
    assert wire(OrderType.MARKET, leverage=5).params["leverage"] == "5"
    with pytest.raises(IncompatibleFlagError):
        wire(OrderType.MARKET, reduce_only=True)
    for bad in (0, -1, True, "2"):
        with pytest.raises(KrakenRequestError):
            wire(OrderType.MARKET, leverage=bad)


def test_zero_volume_only_closes_a_margin_position():
    assert wire(OrderType.MARKET, volume=D("0"), leverage=2, reduce_only=True).params["volume"] == "0"
    for volume in (D("0"), D("-1")):
        with pytest.raises(KrakenRequestError):
            wire(OrderType.MARKET, volume=volume)


def test_floats_are_refused_everywhere():
    with pytest.raises(ValidationError):
        wire(OrderType.MARKET, volume=1.25)
    with pytest.raises(ValidationError):
        wire(OrderType.LIMIT, limit_price=30000.5)


def test_trailing_offset_must_be_plus_and_positive():
    with pytest.raises(KrakenRequestError):
        wire(OrderType.TRAILING_STOP, trailing_offset=Offset(D("5"), sign="-"))
    with pytest.raises(KrakenRequestError):
        wire(OrderType.TRAILING_STOP, trailing_offset=Offset(D("0")))
    with pytest.raises(KrakenRequestError):
        wire(OrderType.TRAILING_STOP_LIMIT, trailing_offset=Offset(D("5")), limit_offset=Offset(D("-1")))
    with pytest.raises(KrakenRequestError):
        wire(OrderType.TRAILING_STOP_LIMIT, trailing_offset=Offset(D("5")), limit_offset=Offset(D("1"), sign="#"))


def test_non_positive_price_refused():
    with pytest.raises(KrakenRequestError):
        wire(OrderType.LIMIT, limit_price=D("0"))


@pytest.mark.parametrize("cl", [CL, CL.replace("-", ""), "entry-42", "x" * 18])
def test_cl_ord_id_forms_accepted(cl):
    assert add_order_params(OrderRequest(pair="XBTUSD", side=OrderSide.BUY, order_type=OrderType.MARKET,
                                         volume=D("1"), cl_ord_id=cl)).params["cl_ord_id"] == cl


@pytest.mark.parametrize("cl", ["", "x" * 19, "has space", "ünïcode"])
def test_cl_ord_id_bad_forms_refused(cl):
    with pytest.raises(KrakenRequestError):
        add_order_params(OrderRequest(pair="XBTUSD", side=OrderSide.BUY, order_type=OrderType.MARKET,
                                      volume=D("1"), cl_ord_id=cl))


def test_time_in_force():
    assert wire(OrderType.LIMIT, limit_price=D("1"), time_in_force="ioc").params["timeinforce"] == "IOC"
    with pytest.raises(IncompatibleFlagError):
        wire(OrderType.LIMIT, limit_price=D("1"), time_in_force="GTD")


def test_deadline_is_rfc3339_utc_and_naive_refused():
    cest = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2024, 1, 1, 12, 0, 0, tzinfo=cest)) == "2024-01-01T10:00:00.000Z"
    with pytest.raises(KrakenRequestError):
        wire(OrderType.MARKET, deadline=datetime(2024, 1, 1))


def test_pair_info_checks_precision_leverage_and_sends_altname(registry):
    xbt = registry.resolve("BTC/USD")
    ok = add_order_params(OrderRequest(pair="BTC/USD", side=OrderSide.BUY, order_type=OrderType.LIMIT,
                                       volume=D("0.12345678"), cl_ord_id=CL, limit_price=D("30000.1")), xbt)
    assert ok.params["pair"] == "XBTUSD"
    with pytest.raises(PrecisionError, match="lot_decimals|allows 8"):
        add_order_params(req(OrderType.MARKET, volume=D("0.123456789")), xbt)
    with pytest.raises(PrecisionError):
        add_order_params(req(OrderType.LIMIT, limit_price=D("30000.15")), xbt)
    with pytest.raises(PrecisionError):
        add_order_params(req(OrderType.TRAILING_STOP, trailing_offset=Offset(D("1.55"))), xbt)
    with pytest.raises(IncompatibleFlagError, match="leverage"):
        add_order_params(req(OrderType.MARKET, leverage=10), xbt)
    assert add_order_params(req(OrderType.MARKET, volume=D("1.2500000000")), xbt).params["volume"] == "1.25"
    with pytest.raises(KrakenRequestError, match="pair"):
        add_order_params(req(OrderType.MARKET), registry.resolve("ETHUSD"))


@given(st.decimals(allow_nan=False, allow_infinity=False, min_value=D("1e-12"), max_value=D("1e12")))
def test_wire_decimal_is_plain_and_exact(value):
    text = wire_decimal(value)
    assert "E" not in text and "e" not in text
    assert D(text) == value
