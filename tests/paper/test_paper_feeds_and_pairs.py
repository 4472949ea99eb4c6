"""Price feeds (real CSV prints, generated flash crash) and pair metadata / name resolution."""
from __future__ import annotations

from decimal import Decimal

import pytest

from triplegain_fsm.paper import PaperExchange, default_pairs
from triplegain_fsm.paper.feeds import flash_crash_series, load_bcheur, load_xrp_eth
from triplegain_fsm.paper.pairs import PairRegistry, build_specs
from triplegain_fsm.paper.params import parse_add_order

pytestmark = pytest.mark.unit


def test_bcheur_prints_load_as_decimal_ticks():
    ticks = load_bcheur()
    assert len(ticks) == 148 and len(load_bcheur(q2=True)) == 486
    first = ticks[0]
    assert (first.time, first.price, first.volume) == (1672531436.0, Decimal("90.540000"), Decimal("1.10448420"))
    assert all(isinstance(t.price, Decimal) for t in ticks)


def test_xrp_eth_prints_and_scaling():
    ticks = load_xrp_eth(scale=30_000_000)
    assert len(ticks) == 12_477
    assert ticks[0].time == pytest.approx(1570752011.62)
    assert ticks[0].price == Decimal("0.00141342") * 30_000_000
    assert all(a.time <= b.time for a, b in zip(ticks, ticks[1:], strict=False))


def test_flash_crash_is_deterministic_and_deep():
    series = flash_crash_series(seed=11)
    assert series == flash_crash_series(seed=11) and series != flash_crash_series(seed=12)
    prices = [t.price for t in series]
    before = prices[299]
    low = min(prices[300:304])
    assert low == prices[303] and (before - low) / before == pytest.approx(Decimal("0.12"), abs=Decimal("0.001"))
    assert abs(prices[363] - before) < 10         # recovered after 60 ticks
    assert all(p % Decimal("0.1") == 0 for p in prices)
    assert Decimal("30000") < min(prices) and max(prices) < Decimal("50000")


def test_replaying_the_crash_triggers_a_stop_at_the_crash_price(clock):
    exchange = PaperExchange(balances={"XXBT": "1", "ZUSD": "0"}, clock=clock, prices={"BTC/USD": "43000"})
    series = flash_crash_series()
    stop_price = (series[299].price * Decimal("0.95")).quantize(Decimal("1"))
    exchange.engine.add_order(parse_add_order(
        {"pair": "XBTUSD", "type": "sell", "ordertype": "stop-loss", "price": str(stop_price), "volume": "1"}))
    [trade] = exchange.replay("BTC/USD", series)
    first_through = next(t for t in series if t.price <= stop_price)
    assert (Decimal(trade["price"]), trade["time"]) == (first_through.price, first_through.time)
    assert series.index(first_through) in range(300, 304)      # during the crash, not before


def test_bcheur_replay_through_the_bcheur_pair(clock):
    exchange = PaperExchange(balances={"ZEUR": "1000"}, clock=clock)
    exchange.replay("BCH/EUR", load_bcheur())
    assert exchange.last_price("BCHEUR") == load_bcheur()[-1].price.quantize(Decimal("0.01"))


def test_default_pairs_are_realistic():
    pairs = default_pairs()
    xbt = pairs["XXBTZUSD"]
    assert (xbt["altname"], xbt["wsname"], xbt["pair_decimals"], xbt["lot_decimals"]) == ("XBTUSD", "XBT/USD", 1, 8)
    assert (xbt["ordermin"], xbt["costmin"], xbt["tick_size"]) == ("0.0001", "0.5", "0.1")
    assert pairs["XETHZUSD"]["wsname"] == "ETH/USD"
    assert pairs["XXRPXETH"]["wsname"] == "XRP/ETH" and pairs["XXRPXETH"]["pair_decimals"] == 8
    assert pairs["BCHEUR"]["quote"] == "ZEUR"


@pytest.mark.parametrize("name, pair_id", [
    ("BTC/USD", "XXBTZUSD"), ("btc/usd", "XXBTZUSD"), ("XBT/USD", "XXBTZUSD"), ("XBTUSD", "XXBTZUSD"),
    ("XXBTZUSD", "XXBTZUSD"), ("BTCUSD", "XXBTZUSD"), ("ETH/USD", "XETHZUSD"), ("XRP/ETH", "XXRPXETH"),
    ("BCH/EUR", "BCHEUR"), ("BCHEUR", "BCHEUR"),
])
def test_pair_names_resolve_like_kraken(name, pair_id):
    assert PairRegistry(build_specs(None)).resolve(name).id == pair_id


def test_unknown_names_and_asset_aliases():
    registry = PairRegistry(build_specs(None))
    assert registry.find("DOGE/USD") is None
    assert registry.asset("BTC").id == "XXBT" and registry.asset("USD").id == "ZUSD"


def test_starting_balances_accept_common_names(clock):
    exchange = PaperExchange(balances={"USD": "10", "BTC": "1"}, clock=clock)
    assert exchange.balances() == {"XXBT": Decimal("1"), "ZUSD": Decimal("10")}
