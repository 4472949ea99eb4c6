"""PairInfo parsing and PairRegistry: every name of a pair resolves, rounding and minimums are safe."""
from __future__ import annotations

import copy
import threading
from decimal import Decimal

import pytest

from triplegain_fsm.enums import OrderSide
from triplegain_fsm.errors import UnknownSymbolError
from triplegain_fsm.kraken.errors import CostBelowMinimum, MalformedResponse, VolumeBelowMinimum
from triplegain_fsm.kraken.pairs import PairInfo, PairRegistry

pytestmark = pytest.mark.unit
D = Decimal


def test_parse_btc_usd(registry):
    xbt = registry.resolve("XXBTZUSD")
    assert xbt == PairInfo(
        id="XXBTZUSD", altname="XBTUSD", wsname="XBT/USD", base="XXBT", quote="ZUSD", pair_decimals=1,
        lot_decimals=8, cost_decimals=5, ordermin=D("0.0001"), costmin=D("0.5"), tick_size=D("0.1"),
        leverage_buy=(2, 3, 4, 5), leverage_sell=(2, 3, 4, 5), fee_taker=D("0.26"), fee_maker=D("0.16"),
        status="online")
    assert xbt.symbol == "BTC/USD"


@pytest.mark.parametrize("name", ["XXBTZUSD", "XBTUSD", "XBT/USD", "BTC/USD", "btc/usd", " xbtusd "])
def test_every_name_of_bitcoin_resolves(registry, name):
    assert registry.resolve(name).id == "XXBTZUSD"


@pytest.mark.parametrize(("name", "pair_id"), [
    ("DOGE/USD", "XDGUSD"), ("XDG/USD", "XDGUSD"), ("XDGUSD", "XDGUSD"),
    ("XRP/USD", "XXRPZUSD"), ("XRPUSD", "XXRPZUSD"), ("XXRPZUSD", "XXRPZUSD"),
    ("SOL/USD", "SOLUSD"), ("SOLUSD", "SOLUSD"),
    ("ETH/BTC", "XETHXXBT"), ("ETH/XBT", "XETHXXBT"), ("ETH/USD", "XETHZUSD"),
])
def test_aliases_and_prefixes(registry, name, pair_id):
    assert registry.resolve(name).id == pair_id


@pytest.mark.parametrize("name", ["RP/USD", "BTC/EUR", "BTCUSD", "", "XBT", "USD/BTC"])
def test_unknown_symbols_raise_typed_error(registry, name):
    with pytest.raises(UnknownSymbolError):
        registry.resolve(name)


def test_symbol_of_goes_back_to_bot_names(registry):
    assert registry.symbol_of("XXBTZUSD") == "BTC/USD"
    assert registry.symbol_of("XDGUSD") == "DOGE/USD"
    assert registry.symbol_of("XRPUSD") == "XRP/USD"
    assert registry.symbol_of(registry.resolve("ETHXBT")) == "ETH/BTC"


def test_a_name_two_pairs_claim_is_refused_not_guessed(kx):
    data = copy.deepcopy(kx.ASSET_PAIRS)
    data["XBTUSD.ALT"] = dict(data["XXBTZUSD"], altname="XBTUSDALT")   # same wsname XBT/USD
    registry = PairRegistry.from_result(data)
    with pytest.raises(UnknownSymbolError, match="more than one"):
        registry.resolve("BTC/USD")
    assert registry.resolve("XBTUSD").id == "XXBTZUSD"   # exact Kraken names still work


def test_round_volume_down_to_lot_decimals(registry):
    assert registry.round_volume("BTC/USD", D("0.123456789")) == D("0.12345678")
    assert registry.round_volume("BTC/USD", D("0.000000009")) == D("0")


def test_round_price_to_tick_in_the_chosen_direction(registry):
    assert registry.round_price("BTC/USD", D("30000.17"), up=False) == D("30000.1")
    assert registry.round_price("BTC/USD", D("30000.11"), up=True) == D("30000.2")
    assert registry.round_price("BTC/USD", D("30000.1"), up=True) == D("30000.1")
    assert registry.round_price("XRP/USD", D("0.523456"), up=True) == D("0.52346")


def test_round_price_uses_pair_decimals_without_tick_size(kx):
    data = copy.deepcopy(kx.ASSET_PAIRS)
    del data["XETHZUSD"]["tick_size"]
    registry = PairRegistry.from_result(data)
    assert registry.resolve("ETH/USD").tick_size is None
    assert registry.round_price("ETH/USD", D("2000.129"), up=False) == D("2000.12")


def test_check_minimums(registry):
    registry.check_minimums("BTC/USD", D("0.0001"), D("30000"))
    with pytest.raises(VolumeBelowMinimum, match="0.0001"):
        registry.check_minimums("BTC/USD", D("0.00009"), D("30000"))
    with pytest.raises(CostBelowMinimum):
        registry.check_minimums("DOGE/USD", D("13"), D("0.03"))    # 0.39 < 0.5


def test_max_leverage(registry):
    assert registry.max_leverage("BTC/USD", OrderSide.BUY) == 5
    assert registry.max_leverage("ETH/USD", "sell") == 3
    assert registry.max_leverage("SOL/USD", "buy") == 1


def test_floats_refused_for_amounts(registry):
    from triplegain_fsm.errors import ValidationError
    with pytest.raises(ValidationError):
        registry.round_volume("BTC/USD", 0.1)


@pytest.mark.parametrize(("field", "value"), [
    ("altname", None), ("altname", 5), ("wsname", ""), ("pair_decimals", "1"), ("lot_decimals", -1),
    ("pair_decimals", True), ("ordermin", "abc"), ("ordermin", 0.0001), ("costmin", "x"),
    ("leverage_buy", "2,3"), ("leverage_buy", [2, "3"]), ("fees", [[0]]), ("fees", "0.26"),
    ("tick_size", "-0.1"),
])
def test_malformed_fields_raise_malformed_response(kx, field, value):
    data = copy.deepcopy(kx.ASSET_PAIRS)
    if value is None:
        del data["XXBTZUSD"][field]
    else:
        data["XXBTZUSD"][field] = value
    with pytest.raises(MalformedResponse, match=field):
        PairRegistry.from_result(data)


@pytest.mark.parametrize("payload", [{}, [], "x", {"XXBTZUSD": "not an object"}])
def test_malformed_payloads(payload):
    with pytest.raises(MalformedResponse):
        PairRegistry.from_result(payload)


def test_optional_fields_default(kx):
    data = {"XXBTZUSD": dict(kx.ASSET_PAIRS["XXBTZUSD"])}
    for name in ("costmin", "tick_size", "leverage_buy", "leverage_sell", "fees_maker", "status"):
        del data["XXBTZUSD"][name]
    info = PairRegistry.from_result(data).resolve("BTC/USD")
    assert (info.costmin, info.tick_size, info.leverage_buy, info.fee_maker, info.status) == (
        None, None, (), D("0.26"), "online")


def test_loaded_lazily_once_across_threads_and_refreshable(kx):
    calls = []
    gate = threading.Barrier(8)

    def loader():
        calls.append(1)
        return kx.ASSET_PAIRS

    registry = PairRegistry(loader)
    assert calls == []
    results = []

    def resolve():
        gate.wait()
        results.append(registry.resolve("BTC/USD").altname)

    threads = [threading.Thread(target=resolve) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["XBTUSD"] * 8 and len(calls) == 1
    registry.refresh()
    assert len(calls) == 2 and len(registry.all()) == len(kx.ASSET_PAIRS)
