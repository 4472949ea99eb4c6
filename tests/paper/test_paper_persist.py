"""The paper exchange's state file: every kind of state round-trips exactly, every answer is durable,
a restarted exchange carries on exactly like one that never stopped, and ticks cost no commit."""
from __future__ import annotations

import shutil
import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from triplegain_fsm.config import Config
from triplegain_fsm.errors import ConfigError
from triplegain_fsm.paper import ManualClock, PaperExchange, paper_from_config
from triplegain_fsm.paper.params import parse_add_order, parse_amend
from triplegain_fsm.paper.persist import PaperStateError, StateFile, dump, read_account_id

pytestmark = pytest.mark.integration

START = 1_700_000_000.0
SOFT = ("prices", "stats", "tick_count", "budget", "clock")   # kept in memory between real changes


def exchange(path: Path | None, clock: ManualClock | None = None, **kwargs: Any) -> PaperExchange:
    kwargs.setdefault("balances", {"ZUSD": "100000.123456789012345678", "XXBT": "2", "XETH": "10"})
    kwargs.setdefault("prices", {"BTC/USD": "43000", "ETH/USD": "2300"})
    return PaperExchange(clock=clock or ManualClock(START), account="margin", seed=11,
                         liquidity_per_tick={"XETHZUSD": "0.5"}, state_path=path, **kwargs)


def add(ex: PaperExchange, **params: str) -> str:
    result = ex.engine.add_order(parse_add_order(params))
    return result["txid"][0]


def state(ex: PaperExchange) -> dict[str, Any]:
    return dump(ex.engine._state)


def hard(snapshot: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in snapshot.items() if k not in SOFT}


def busy_morning(ex: PaperExchange) -> dict[str, str]:
    """One of everything: fills, a conditional close, triggers, an amendment, cancels, an expiry, a
    pending start, partial fills against limited liquidity, margin rows opened and partly closed,
    the dead man's switch, a pair status."""
    clock = ex.clock
    assert isinstance(clock, ManualClock)
    ids = {
        "entry": add(ex, pair="XBTUSD", type="buy", ordertype="market", volume="0.5",
                     **{"close[ordertype]": "stop-loss", "close[price]": "41000"}),
        "limit": add(ex, pair="XBTUSD", type="buy", ordertype="limit", price="42000", volume="0.2",
                     cl_ord_id="mine-1"),
        "tp": add(ex, pair="XBTUSD", type="sell", ordertype="take-profit-limit", price="45000", price2="44900",
                  volume="0.1", userref="7"),
        "trail": add(ex, pair="XBTUSD", type="sell", ordertype="trailing-stop", price="+500", volume="0.1"),
        "eth": add(ex, pair="ETHUSD", type="buy", ordertype="limit", price="2290", volume="3"),
        "long": add(ex, pair="XBTUSD", type="buy", ordertype="market", volume="0.1", leverage="3"),
        "expiring": add(ex, pair="XBTUSD", type="buy", ordertype="limit", price="40000", volume="0.01",
                        expiretm="+60"),
        "later": add(ex, pair="XBTUSD", type="buy", ordertype="limit", price="39000", volume="0.01",
                     starttm="+3600"),
    }
    ids["reduce"] = add(ex, pair="XBTUSD", type="sell", ordertype="market", volume="0.04", leverage="3")
    ex.engine.amend_order(parse_amend({"cl_ord_id": "mine-1", "limit_price": "42100", "order_qty": "0.3"}))
    ex.engine.cancel_order(txid=ids["tp"])
    clock.advance(61)
    ex.process_time()                                 # the expiring order expires
    ex.engine.cancel_all_after(600)
    ex.set_pair_status("BCH/EUR", "limit_only")
    ex.set_price("BTC/USD", "43600")                  # the trailing stop's watermark moves up
    ex.set_price("ETH/USD", "2285")                   # a partial fill (0.5 a tick)
    ex.set_price("ETH/USD", "2284")
    clock.advance(5)
    ex.set_price("BTC/USD", "43050")                  # the trailing stop fires and fills
    return ids


def test_every_kind_of_state_round_trips_exactly(tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite"
    ex = exchange(path)
    ids = busy_morning(ex)
    before = state(ex)
    views = (ex.open_orders(), ex.engine.closed_orders(trades=True), ex.trades(), ex.balances(), ex.holds(),
             ex.positions(), ex.engine.ticker(), ex.engine.trade_balance())
    ex.close()

    again = exchange(path, ManualClock(0), balances={"ZUSD": "1"}, prices={"BTC/USD": "1"})  # seeds are ignored
    assert state(again) == before
    assert (again.open_orders(), again.engine.closed_orders(trades=True), again.trades(), again.balances(),
            again.holds(), again.positions(), again.engine.ticker(), again.engine.trade_balance()) == views
    assert again.clock() == START + 66
    assert again.engine.dead_man_at == START + 61 + 600
    order = again.order(ids["limit"])
    assert order["descr"]["price"] == "42100.0" and order["vol"] == "0.30000000" and "amended" in order["misc"]
    assert again.order(ids["expiring"])["status"] == "expired"
    assert again.order(ids["later"])["status"] == "pending"
    assert again.order(ids["trail"])["status"] == "closed"
    assert again.order(ids["eth"])["vol_exec"] == "1.00000000"
    assert again.balances()["ZUSD"] == ex.balances()["ZUSD"]       # every digit of the Decimal
    assert str(again.balances()["ZUSD"]) == str(ex.balances()["ZUSD"])
    assert len(again.positions()) == 1
    again.close()


def test_a_restarted_exchange_carries_on_exactly_like_one_that_never_stopped(tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite"
    restarted, steady = exchange(path), exchange(None)
    busy_morning(restarted)
    busy_morning(steady)
    for step in range(5):
        restarted.close()
        restarted = exchange(path, ManualClock(0))
        for ex in (restarted, steady):
            ex.set_price("ETH/USD", str(2283 - step))                 # more partial fills
            ex.set_price("BTC/USD", str(43000 + 300 * step))
            add(ex, pair="XBTUSD", type="sell", ordertype="limit", price=str(44000 + step), volume="0.01")
            ex.engine.amend_order(parse_amend({"cl_ord_id": "mine-1", "limit_price": str(42000 + step)}))
            assert isinstance(ex.clock, ManualClock)
            ex.clock.advance(1)
        assert state(restarted) == state(steady)                      # same txids, trade ids, books, money
    restarted.set_price("BTC/USD", "40900")                           # the conditional stop-loss fires
    steady.set_price("BTC/USD", "40900")
    assert state(restarted) == state(steady)
    restarted.close()


def test_a_fill_latency_counts_on_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite"
    restarted, steady = exchange(path, fill_latency_ticks=3), exchange(None, fill_latency_ticks=3)
    for ex in (restarted, steady):
        add(ex, pair="XBTUSD", type="buy", ordertype="market", volume="0.1")
        ex.set_price("BTC/USD", "43010")
    restarted.close()
    restarted = exchange(path, ManualClock(0), fill_latency_ticks=3)
    for price in ("43020", "43030", "43040"):
        assert [t["price"] for t in restarted.set_price("BTC/USD", price)] == \
            [t["price"] for t in steady.set_price("BTC/USD", price)]
    assert len(steady.trades()) == 1 and state(restarted) == state(steady)
    restarted.close()


def copy_as_on_disk(path: Path, into: Path) -> Path:
    """The file as a crash would leave it: the database and its write-ahead log, nothing flushed."""
    into.mkdir(exist_ok=True)
    for suffix in ("", "-wal"):
        if Path(f"{path}{suffix}").exists():
            shutil.copyfile(f"{path}{suffix}", into / f"{path.name}{suffix}")
    return into / path.name


def test_every_answer_is_on_disk_before_it_is_given(tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite"
    ex = exchange(path)
    steps = [
        lambda: add(ex, pair="XBTUSD", type="buy", ordertype="market", volume="0.5",
                    **{"close[ordertype]": "stop-loss", "close[price]": "41000"}),
        lambda: add(ex, pair="XBTUSD", type="buy", ordertype="limit", price="42000", volume="0.2", cl_ord_id="c"),
        lambda: ex.engine.amend_order(parse_amend({"cl_ord_id": "c", "limit_price": "42050"})),
        lambda: ex.set_price("BTC/USD", "42040"),                    # a fill from a tick
        lambda: add(ex, pair="XBTUSD", type="sell", ordertype="limit", price="45000", volume="0.1"),
        lambda: ex.engine.cancel_all(),
        lambda: ex.engine.cancel_all_after(60),
        lambda: add(ex, pair="XBTUSD", type="buy", ordertype="market", volume="0.1", leverage="2"),
    ]
    for n, step in enumerate(steps):
        step()
        crashed = exchange(copy_as_on_disk(path, tmp_path / f"crash{n}"), ManualClock(0))
        assert hard(state(crashed)) == hard(state(ex)), n
        assert crashed.open_orders() == ex.open_orders() and crashed.trades() == ex.trades()
        crashed.close()
    # the same file, the first exchange never closed (it "crashed"): the newcomer takes the file over
    newcomer = exchange(path, ManualClock(0))
    assert hard(state(newcomer)) == hard(state(ex))
    ex.set_price("BTC/USD", "43000")                                   # a price alone writes nothing: allowed
    with pytest.raises(PaperStateError, match="opened by another paper exchange"):
        add(ex, pair="XBTUSD", type="buy", ordertype="market", volume="0.01")
    newcomer.close()


def test_a_tick_that_moves_only_the_price_costs_no_commit_and_is_written_on_close(tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite"
    ex = exchange(path)
    add(ex, pair="XBTUSD", type="buy", ordertype="limit", price="30000", volume="0.01")   # far away: never woken
    assert ex.state_file is not None
    conn = ex.state_file._conn
    changes = conn.total_changes
    for i in range(200):
        ex.set_price("BTC/USD", str(43000 + i % 50))
    ex.open_orders(), ex.balances(), ex.engine.query_orders(list(ex.open_orders()))      # reads write nothing
    assert conn.total_changes == changes
    crashed = exchange(copy_as_on_disk(path, tmp_path / "crash"), ManualClock(0))
    assert crashed.last_price("BTC/USD") == Decimal("43000")           # the documented trade-off
    crashed.close()
    ex.close()
    again = exchange(path, ManualClock(0))
    assert again.last_price("BTC/USD") == Decimal("43049")
    assert again.engine.ticker(["XBTUSD"])["XXBTZUSD"]["t"] == [201, 201]
    again.close()


def test_ids_never_repeat_after_a_restart_even_unseeded(tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite"
    ex = PaperExchange(state_path=path, prices={"BTC/USD": "43000"})
    seen = {add(ex, pair="XBTUSD", type="buy", ordertype="market", volume="0.001") for _ in range(20)}
    trade_ids = {t["trade_id"] for t in ex.trades().values()}
    ex.close()
    again = PaperExchange(state_path=path)
    new = {add(again, pair="XBTUSD", type="buy", ordertype="market", volume="0.001") for _ in range(20)}
    assert not seen & new
    later = {t["trade_id"] for t in again.trades().values()} - trade_ids
    assert min(later) > max(trade_ids)
    assert again.engine._state.ids._issued >= seen | new
    again.close()


def test_a_failed_write_is_refused_to_the_client_and_the_next_one_rewrites_everything(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "paper.sqlite"
    ex = exchange(path)
    original = StateFile._write_changes

    def disk_full(self: StateFile, *args: Any) -> None:
        monkeypatch.setattr(StateFile, "_write_changes", original)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(StateFile, "_write_changes", disk_full)
    with pytest.raises(sqlite3.OperationalError):
        add(ex, pair="XBTUSD", type="buy", ordertype="market", volume="0.1")
    ex.set_price("BTC/USD", "43001")
    crashed = exchange(copy_as_on_disk(path, tmp_path / "crash"), ManualClock(0))
    assert hard(state(crashed)) == hard(state(ex))
    assert len(crashed.trades()) == 1
    crashed.close()
    ex.close()


def test_a_closed_exchange_refuses_changes_but_still_answers_reads(tmp_path: Path) -> None:
    ex = exchange(tmp_path / "paper.sqlite")
    ex.close()
    ex.close()                                                          # idempotent
    assert ex.balances()["XXBT"] == Decimal(2)
    with pytest.raises(PaperStateError, match="closed"):
        add(ex, pair="XBTUSD", type="buy", ordertype="market", volume="0.1")


def test_a_state_file_from_a_newer_version_or_with_unknown_pairs_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "paper.sqlite"
    ex = exchange(path, balances={"ZEUR": "1000"})
    add(ex, pair="BCHEUR", type="buy", ordertype="limit", price="100", volume="1")
    ex.close()
    with pytest.raises(ConfigError, match="BCHEUR"):
        exchange(path, pairs={k: v for k, v in PaperExchange.default_pairs().items() if k != "BCHEUR"})
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(ConfigError, match="newer"):
        exchange(path)


def test_paper_from_config_keeps_the_account_beside_the_store(tmp_path: Path) -> None:
    store = tmp_path / "bot.sqlite"
    config = Config.from_dict({"storage": {"path": str(store)}})
    ex = paper_from_config(config)
    assert ex.state_file is not None and ex.state_file.path == str(tmp_path / "bot.paper.sqlite")
    assert read_account_id(tmp_path / "bot.paper.sqlite") == ex.account_id is not None
    ex.close()
    assert paper_from_config(Config.from_dict({"storage": {"path": ":memory:"}})).state_file is None
    off = Config.from_dict({"storage": {"path": str(store)}, "paper": {"state_path": ":memory:"}})
    assert paper_from_config(off).account_id is None
    named = Config.from_dict({"storage": {"path": str(store)}, "paper": {"state_path": "sub/acct.sqlite"}})
    assert named.paper.state_file(str(store)) == str(tmp_path / "sub" / "acct.sqlite")
    same = Config.from_dict({"storage": {"path": str(store)}, "paper": {"state_path": str(store)}})
    with pytest.raises(ConfigError, match="must not be the store"):
        same.paper.state_file(str(store))
    with pytest.raises(ConfigError, match="state_path"):
        Config.from_dict({"paper": {"state_path": " "}})
    assert read_account_id(tmp_path / "nothing.sqlite") is None
