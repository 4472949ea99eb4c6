"""The F01 table on both channels: ONE list of cases drives the REST builder and the WS v2 builder.

Each case is an order the core places, with the exact REST AddOrder body and the exact WS
`add_order` params (or the error WS must raise: an order WS cannot say goes by REST).
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, NamedTuple

import pytest

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
from triplegain_fsm.kraken.params import PRICE_FIELDS, add_order_params, wire_decimal
from triplegain_fsm.kraken.stream_wire import dumps
from triplegain_fsm.kraken.ws_params import (
    LIMIT,
    TRIGGER,
    WS_PRICE_FIELDS,
    RestOnlyOrder,
    add_order_ws_params,
    amend_order_ws_params,
    cancel_all_orders_after_ws_params,
    cancel_order_ws_params,
)
from triplegain_fsm.paper.ws_methods import PRICE_LAYOUT

pytestmark = pytest.mark.unit
D = Decimal
CL = "6d1b345e-2821-40e2-ad83-4ecb18a06876"
DEADLINE = datetime(2024, 7, 21, 9, 53, 59, 50_000, tzinfo=timezone.utc)
BUY, SELL = OrderSide.BUY, OrderSide.SELL


def trig(price: str) -> dict[str, Any]:
    return {"triggers": {"reference": "last", "price": D(price), "price_type": "static"}}


class Case(NamedTuple):
    name: str
    pair: str                                   # altname in the test registry (conftest ASSET_PAIRS)
    request: dict[str, Any]                     # OrderRequest fields besides pair and cl_ord_id
    rest: dict[str, str]                        # REST AddOrder body besides pair and cl_ord_id
    ws: dict[str, Any] | type[Exception]        # WS add_order params besides symbol and cl_ord_id, or the error


def r(side: OrderSide, order_type: OrderType, volume: str, **kw: Any) -> dict[str, Any]:
    return {"side": side, "order_type": order_type, "volume": D(volume), **kw}


CASES = [
    Case("market", "XBTUSD", r(SELL, OrderType.MARKET, "1.25"),
         {"type": "sell", "ordertype": "market", "volume": "1.25", "oflags": "fciq"},
         {"order_type": "market", "side": "sell", "order_qty": D("1.25"), "fee_preference": "quote"}),
    Case("limit", "XBTUSD", r(BUY, OrderType.LIMIT, "0.50", limit_price=D("37500.0")),
         {"type": "buy", "ordertype": "limit", "volume": "0.5", "price": "37500", "oflags": "fciq"},
         {"order_type": "limit", "side": "buy", "order_qty": D("0.5"), "limit_price": D("37500"),
          "fee_preference": "quote"}),
    Case("stop-loss", "XBTUSD", r(SELL, OrderType.STOP_LOSS, "1.25", trigger_price=D("40000")),
         {"type": "sell", "ordertype": "stop-loss", "volume": "1.25", "price": "40000", "oflags": "fciq"},
         {"order_type": "stop-loss", "side": "sell", "order_qty": D("1.25"), **trig("40000"),
          "fee_preference": "quote"}),
    Case("take-profit", "XBTUSD", r(SELL, OrderType.TAKE_PROFIT, "1.25", trigger_price=D("52000.5")),
         {"type": "sell", "ordertype": "take-profit", "volume": "1.25", "price": "52000.5", "oflags": "fciq"},
         {"order_type": "take-profit", "side": "sell", "order_qty": D("1.25"), **trig("52000.5"),
          "fee_preference": "quote"}),
    Case("stop-loss-limit", "XBTUSD",
         r(SELL, OrderType.STOP_LOSS_LIMIT, "1.25", trigger_price=D("40000"), limit_price=D("39900")),
         {"type": "sell", "ordertype": "stop-loss-limit", "volume": "1.25", "price": "40000", "price2": "39900",
          "oflags": "fciq"},
         {"order_type": "stop-loss-limit", "side": "sell", "order_qty": D("1.25"), "limit_price": D("39900"),
          **trig("40000"), "fee_preference": "quote"}),
    Case("take-profit-limit", "XBTUSD",
         r(SELL, OrderType.TAKE_PROFIT_LIMIT, "1.25", trigger_price=D("52000"), limit_price=D("51950")),
         {"type": "sell", "ordertype": "take-profit-limit", "volume": "1.25", "price": "52000", "price2": "51950",
          "oflags": "fciq"},
         {"order_type": "take-profit-limit", "side": "sell", "order_qty": D("1.25"), "limit_price": D("51950"),
          **trig("52000"), "fee_preference": "quote"}),
    Case("margin at the pair's maximum", "XBTUSD", r(BUY, OrderType.MARKET, "0.1", leverage=5),
         {"type": "buy", "ordertype": "market", "volume": "0.1", "leverage": "5", "oflags": "fciq"},
         {"order_type": "market", "side": "buy", "order_qty": D("0.1"), "margin": True, "fee_preference": "quote"}),
    Case("margin at the maximum of that pair and side", "ETHUSD", r(SELL, OrderType.LIMIT, "2", leverage=3,
                                                                  limit_price=D("3000.25")),
         {"type": "sell", "ordertype": "limit", "volume": "2", "price": "3000.25", "leverage": "3", "oflags": "fciq"},
         {"order_type": "limit", "side": "sell", "order_qty": D("2"), "limit_price": D("3000.25"), "margin": True,
          "fee_preference": "quote"}),
    Case("margin below the maximum: REST only", "XBTUSD", r(BUY, OrderType.MARKET, "0.1", leverage=3),
         {"type": "buy", "ordertype": "market", "volume": "0.1", "leverage": "3", "oflags": "fciq"},
         RestOnlyOrder),
    Case("reduce_only stop closing a margin position", "XBTUSD",
         r(SELL, OrderType.STOP_LOSS, "0.1", trigger_price=D("41000"), leverage=5, reduce_only=True),
         {"type": "sell", "ordertype": "stop-loss", "volume": "0.1", "price": "41000", "leverage": "5",
          "reduce_only": "true", "oflags": "fciq"},
         {"order_type": "stop-loss", "side": "sell", "order_qty": D("0.1"), **trig("41000"), "margin": True,
          "reduce_only": True, "fee_preference": "quote"}),
    Case("post_only limit", "XBTUSD", r(BUY, OrderType.LIMIT, "0.1", limit_price=D("42000"), post_only=True),
         {"type": "buy", "ordertype": "limit", "volume": "0.1", "price": "42000", "oflags": "fciq,post"},
         {"order_type": "limit", "side": "buy", "order_qty": D("0.1"), "limit_price": D("42000"),
          "fee_preference": "quote", "post_only": True}),
    Case("time in force, deadline, validate", "XBTUSD",
         r(BUY, OrderType.LIMIT, "0.00010000", limit_price=D("30000.1"), time_in_force="ioc", deadline=DEADLINE,
           validate=True),
         {"type": "buy", "ordertype": "limit", "volume": "0.0001", "price": "30000.1", "oflags": "fciq",
          "timeinforce": "IOC", "deadline": "2024-07-21T09:53:59.050Z", "validate": "true"},
         {"order_type": "limit", "side": "buy", "order_qty": D("0.0001"), "limit_price": D("30000.1"),
          "time_in_force": "ioc", "fee_preference": "quote", "deadline": "2024-07-21T09:53:59.050Z",
          "validate": True}),
    Case("volume in quote", "XBTUSD", r(BUY, OrderType.MARKET, "100", volume_in_quote=True),
         {"type": "buy", "ordertype": "market", "volume": "100", "oflags": "fciq,viqc"},
         {"order_type": "market", "side": "buy", "cash_order_qty": D("100"), "fee_preference": "quote"}),
    Case("the pair's full precision, trailing zeros dropped", "XBTUSD",
         r(SELL, OrderType.STOP_LOSS_LIMIT, "0.12345678", trigger_price=D("30000.10"), limit_price=D("29990.0")),
         {"type": "sell", "ordertype": "stop-loss-limit", "volume": "0.12345678", "price": "30000.1",
          "price2": "29990", "oflags": "fciq"},
         {"order_type": "stop-loss-limit", "side": "sell", "order_qty": D("0.12345678"), "limit_price": D("29990"),
          **trig("30000.1"), "fee_preference": "quote"}),
    Case("trailing stop: REST only", "XBTUSD", r(SELL, OrderType.TRAILING_STOP, "1", trailing_offset=Offset(D("150"))),
         {"type": "sell", "ordertype": "trailing-stop", "volume": "1", "price": "+150", "oflags": "fciq"},
         RestOnlyOrder),
    Case("close a whole margin position (volume 0): REST only", "XBTUSD",
         r(SELL, OrderType.MARKET, "0", leverage=5, reduce_only=True),
         {"type": "sell", "ordertype": "market", "volume": "0", "leverage": "5", "reduce_only": "true",
          "oflags": "fciq"},
         RestOnlyOrder),
]


def request(case: Case) -> OrderRequest:
    return OrderRequest(pair=case.pair, cl_ord_id=CL, **case.request)


def amounts(value: Any) -> list[Any]:
    """Every number in a params tree."""
    if isinstance(value, dict):
        return [a for v in value.values() for a in amounts(v)]
    return [value] if isinstance(value, (Decimal, int, float)) and not isinstance(value, bool) else []


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_rest_body(case, registry):
    pair = registry.resolve(case.pair)
    assert add_order_params(request(case), pair).params == {"pair": pair.altname, **case.rest, "cl_ord_id": CL}


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_ws_params(case, registry):
    pair = registry.resolve(case.pair)
    if isinstance(case.ws, type):
        with pytest.raises(case.ws, match="REST"):
            add_order_ws_params(request(case), pair)
        return
    params = add_order_ws_params(request(case), pair)
    assert params == {**case.ws, "symbol": pair.symbol, "cl_ord_id": CL}
    assert all(isinstance(a, Decimal) for a in amounts(params))        # money is never a float
    for a in amounts(params):                                          # and has REST's digits exactly
        assert wire_decimal(a) in case.rest.values()


def test_the_cases_cover_every_order_type_the_core_places():
    core_types = {OrderType.MARKET, OrderType.LIMIT, OrderType.STOP_LOSS, OrderType.TAKE_PROFIT,
                  OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT}
    on_ws = {c.request["order_type"] for c in CASES if not isinstance(c.ws, type)}
    assert on_ws == core_types
    assert {t for t, layout in WS_PRICE_FIELDS.items() if layout is not None} == core_types


def test_the_ws_table_names_the_same_request_fields_as_the_rest_table():
    assert set(WS_PRICE_FIELDS) == set(OrderType) == set(PRICE_FIELDS)
    for order_type, layout in WS_PRICE_FIELDS.items():
        if layout is not None:
            assert set(layout) == set(PRICE_FIELDS[order_type]), order_type


def test_the_ws_table_agrees_with_the_paper_exchanges_translation():
    """Three tables, one layout: ours for WS, ours for REST, and the paper's WS -> REST translation."""
    for order_type, layout in WS_PRICE_FIELDS.items():
        trigger_slot, limit_slot = PRICE_LAYOUT[order_type.value]
        for field, ws_field in (layout or {}).items():
            slot = trigger_slot if ws_field == TRIGGER else limit_slot
            assert ws_field in (TRIGGER, LIMIT) and slot == PRICE_FIELDS[order_type][field], (order_type, field)


def test_the_stop_trigger_is_sent_as_triggers_price_on_the_socket(registry):
    """F01 in WS form, on the bytes: a stop-loss-limit's trigger in triggers.price, its limit in limit_price."""
    pair = registry.resolve("XBTUSD")
    req = OrderRequest(pair="BTC/USD", side=SELL, order_type=OrderType.STOP_LOSS_LIMIT, volume=D("1.25"),
                       cl_ord_id=CL, trigger_price=D("40000"), limit_price=D("39900"))
    text = dumps(add_order_ws_params(req, pair))
    assert '"limit_price":39900,"triggers":{"reference":"last","price":40000,"price_type":"static"}' in text
    assert text.startswith('{"order_type":"stop-loss-limit","side":"sell","order_qty":1.25,"symbol":"BTC/USD"')


@pytest.mark.parametrize(("kw", "error"), [
    (r(SELL, OrderType.STOP_LOSS, "1", trigger_price=D("1"), limit_price=D("1")), UnexpectedPriceError),  # F01
    (r(BUY, OrderType.LIMIT, "1", trigger_price=D("1"), limit_price=D("1")), UnexpectedPriceError),
    (r(SELL, OrderType.STOP_LOSS_LIMIT, "1", trigger_price=D("1")), MissingPriceError),
    (r(BUY, OrderType.LIMIT, "1"), MissingPriceError),
    (r(BUY, OrderType.LIMIT, "1", limit_price=D("30000.15")), PrecisionError),
    (r(BUY, OrderType.MARKET, "0.123456789"), PrecisionError),
    (r(BUY, OrderType.MARKET, "1", post_only=True), IncompatibleFlagError),
    (r(BUY, OrderType.MARKET, "1", leverage=10), IncompatibleFlagError),
    (r(BUY, OrderType.MARKET, "1", reduce_only=True), IncompatibleFlagError),
    (r(BUY, OrderType.MARKET, "1", deadline=datetime(2024, 1, 1)), KrakenRequestError),
])
def test_a_request_rest_refuses_is_refused_on_ws_with_the_same_error(registry, kw, error):
    pair = registry.resolve("XBTUSD")
    req = OrderRequest(pair="XBTUSD", cl_ord_id=CL, **kw)
    with pytest.raises(error):
        add_order_params(req, pair)
    with pytest.raises(error):
        add_order_ws_params(req, pair)


def test_a_request_for_another_pair_is_refused(registry):
    req = OrderRequest(pair="ETHUSD", side=BUY, order_type=OrderType.MARKET, volume=D("1"), cl_ord_id=CL)
    with pytest.raises(KrakenRequestError, match="pair"):
        add_order_ws_params(req, registry.resolve("XBTUSD"))


def test_the_symbol_is_kraken_v2s_name_from_any_name_of_the_pair(registry):
    for name in ("XBTUSD", "XXBTZUSD", "XBT/USD", "BTC/USD"):
        req = OrderRequest(pair=name, side=BUY, order_type=OrderType.MARKET, volume=D("1"), cl_ord_id=CL)
        assert add_order_ws_params(req, registry.resolve(name))["symbol"] == "BTC/USD"
    doge = OrderRequest(pair="XDGUSD", side=BUY, order_type=OrderType.MARKET, volume=D("20"), cl_ord_id=CL)
    assert add_order_ws_params(doge, registry.resolve("XDGUSD"))["symbol"] == "DOGE/USD"


# --- amend, cancel, dead man's switch ------------------------------------------------------------

def test_amend_params_carry_rest_digits_as_decimals():
    params = amend_order_ws_params("OABCDE-FGHIJ-KLMNOP", D("0.50000000"), D("41000.50"), D("1E+3"))
    assert params == {"order_id": "OABCDE-FGHIJ-KLMNOP", "order_qty": D("0.5"), "limit_price": D("41000.5"),
                      "trigger_price": D("1000")}
    assert dumps(params) == ('{"order_id":"OABCDE-FGHIJ-KLMNOP","order_qty":0.5,"limit_price":41000.5,'
                             '"trigger_price":1000}')
    assert amend_order_ws_params(cl_ord_id=CL, trigger_price=D("40000")) == {"cl_ord_id": CL,
                                                                            "trigger_price": D("40000")}


@pytest.mark.parametrize(("args", "kwargs"), [
    (("OID",), {}),                                              # nothing to change
    ((), {"limit_price": D("1")}),                               # no id
    (("OID",), {"cl_ord_id": CL, "limit_price": D("1")}),        # two ids
    (("OID",), {"limit_price": 41000.5}),                        # a float
    (("OID",), {"trigger_price": D("0")}),                       # not positive
    (("OID",), {"order_qty": D("-1")}),
    (("",), {"limit_price": D("1")}),
])
def test_amend_params_refused(args, kwargs):
    with pytest.raises(ValidationError):
        amend_order_ws_params(*args, **kwargs)


def test_cancel_params_name_one_order_in_a_list():
    assert cancel_order_ws_params(order_id="OID") == {"order_id": ["OID"]}
    assert cancel_order_ws_params(cl_ord_id=CL) == {"cl_ord_id": [CL]}
    for bad in ({}, {"order_id": "OID", "cl_ord_id": CL}, {"order_id": ""}):
        with pytest.raises(ValidationError):
            cancel_order_ws_params(**bad)


def test_cancel_all_orders_after_params():
    assert cancel_all_orders_after_ws_params(60) == {"timeout": 60}
    assert cancel_all_orders_after_ws_params(0) == {"timeout": 0}
    for bad in (-1, 86401, True, 1.5, "60"):
        with pytest.raises(ValidationError):
            cancel_all_orders_after_ws_params(bad)  # type: ignore[arg-type]
