"""The served exchange's market: public Depth, OHLC and Trades in Kraken's shapes (read by krakenex and
python-kraken-sdk), the /admin/price door, a price file replayed into it, and the request log."""
from __future__ import annotations

import json
from decimal import Decimal as D

import krakenex
import pytest
import requests

from triplegain_fsm.kraken.signing import NonceSource
from triplegain_fsm.paper import PAPER_API_SECRET, ManualClock, PaperExchange, market_data
from triplegain_fsm.paper.admin import Admin
from triplegain_fsm.paper.feeds import Tick
from triplegain_fsm.paper.replay import Replay
from triplegain_fsm.paper.server import RequestRecord, serve

pytestmark = pytest.mark.integration

T0 = 1_700_000_100.0   # on a 5-minute boundary


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def served(clock: ManualClock):
    exchange = PaperExchange(prices={"BTC/USD": "43000"}, balances={"ZUSD": "100000", "XXBT": "1"}, clock=clock)
    records: list[RequestRecord] = []
    server = serve(exchange, port=0, on_request=records.append)
    yield exchange, server, records
    server.shutdown()


def client(url: str) -> krakenex.API:
    api = krakenex.API(key="paper-key", secret=PAPER_API_SECRET)
    api.uri = url
    api._nonce = NonceSource().next
    return api


def prints(exchange: PaperExchange, clock: ManualClock, *moves: tuple[float, str, str]) -> None:
    for seconds, price, volume in moves:
        clock.set(T0 + seconds)
        market_data.tick(exchange, "BTC/USD", price, volume)


def test_depth_ohlc_and_trades_in_krakens_shapes(served, clock: ManualClock) -> None:
    exchange, server, _ = served
    prints(exchange, clock, (0, "43000", "0.5"), (10, "43100", "0.25"), (50, "42900", "1"), (70, "43050", "0.5"))
    api = client(server.url)

    book = api.query_public("Depth", {"pair": "XBTUSD", "count": 3})
    assert book["error"] == []
    assert book["result"]["XXBTZUSD"] == {
        "asks": [["43050.0", "1.00000000", int(T0 + 70)], ["43050.1", "1.00000000", int(T0 + 70)],
                 ["43050.2", "1.00000000", int(T0 + 70)]],
        "bids": [["43050.0", "1.00000000", int(T0 + 70)], ["43049.9", "1.00000000", int(T0 + 70)],
                 ["43049.8", "1.00000000", int(T0 + 70)]]}

    candles = api.query_public("OHLC", {"pair": "XBTUSD", "interval": 1})["result"]
    assert candles["XXBTZUSD"] == [
        [int(T0), "43000.0", "43100.0", "42900.0", "42900.0", "42957.1", "1.75000000", 3],
        [int(T0) + 60, "43050.0", "43050.0", "43050.0", "43050.0", "43050.0", "0.50000000", 1]]
    assert candles["last"] == int(T0)                    # the last committed interval; the open one follows it
    newer = api.query_public("OHLC", {"pair": "XBTUSD", "since": candles["last"]})["result"]["XXBTZUSD"]
    assert [c[0] for c in newer] == [int(T0) + 60]
    assert len(api.query_public("OHLC", {"pair": "XBTUSD", "interval": 5})["result"]["XXBTZUSD"]) == 1

    tape = api.query_public("Trades", {"pair": "XBTUSD"})["result"]
    assert [(t[0], t[1], t[2], t[3], t[4]) for t in tape["XXBTZUSD"]] == [
        ("43000.0", "0.50000000", T0, "b", "m"), ("43100.0", "0.25000000", T0 + 10, "b", "m"),
        ("42900.0", "1.00000000", T0 + 50, "s", "m"), ("43050.0", "0.50000000", T0 + 70, "b", "m")]
    assert tape["last"] == str(int((T0 + 70) * 1_000_000_000))
    after = api.query_public("Trades", {"pair": "XBTUSD", "since": str(int((T0 + 10) * 1_000_000_000))})
    assert [t[0] for t in after["result"]["XXBTZUSD"]] == ["42900.0", "43050.0"]    # nanoseconds, as Kraken's last
    assert [t[0] for t in api.query_public("Trades", {"pair": "XBTUSD", "since": T0 + 50})["result"]["XXBTZUSD"]] \
        == ["43050.0"]                                                                # or seconds
    assert len(api.query_public("Trades", {"pair": "XBTUSD", "count": 2})["result"]["XXBTZUSD"]) == 2
    api.close()


def test_before_any_print_there_is_one_candle_at_the_last_price_and_no_trade(served) -> None:
    _, server, _ = served
    api = client(server.url)
    candles = api.query_public("OHLC", {"pair": "XBTUSD"})["result"]["XXBTZUSD"]
    assert candles == [[int(T0), "43000.0", "43000.0", "43000.0", "43000.0", "43000.0", "0.00000000", 0]]
    assert api.query_public("Trades", {"pair": "XBTUSD"})["result"]["XXBTZUSD"] == []
    assert api.query_public("Depth", {"pair": "ETHUSD"})["result"] == {"XETHZUSD": {"asks": [], "bids": []}}
    api.close()


@pytest.mark.parametrize(("method", "params", "error"), [
    ("Depth", {}, "EGeneral:Invalid arguments:pair"),
    ("Depth", {"pair": "XBTUSD", "count": 501}, "EGeneral:Invalid arguments:count"),
    ("OHLC", {"pair": "XBTUSD", "interval": 7}, "EGeneral:Invalid arguments:interval"),
    ("OHLC", {"pair": "XBTUSD,ETHUSD"}, "EGeneral:Invalid arguments:pair"),
    ("Trades", {"pair": "DOGEUSD"}, "EQuery:Unknown asset pair"),
    ("Trades", {"pair": "XBTUSD", "since": "yesterday"}, "EGeneral:Invalid arguments:since"),
])
def test_bad_market_data_parameters_get_krakens_errors(served, method: str, params: dict, error: str) -> None:
    _, server, _ = served
    answer = requests.get(f"{server.url}/0/public/{method}", params=params, timeout=5).json()
    assert answer["error"] == [error]


def test_python_kraken_sdk_reads_the_order_book_candles_and_trades(served, clock: ManualClock) -> None:
    spot = pytest.importorskip("kraken.spot")
    exchange, server, _ = served
    prints(exchange, clock, (0, "43000", "0.5"), (61, "43010", "0.5"))
    market = spot.Market(url=server.url)
    book = market.get_order_book(pair="XBTUSD", count=2)
    assert book["XXBTZUSD"]["asks"][0][0] == "43010.0"
    assert [c[4] for c in market.get_ohlc(pair="XBTUSD", interval=1)["XXBTZUSD"]] == ["43000.0", "43010.0"]
    assert [t[0] for t in market.get_recent_trades(pair="XBTUSD")["XXBTZUSD"]] == ["43000.0", "43010.0"]


def test_admin_price_moves_the_market_and_triggers_a_resting_stop(served) -> None:
    exchange, server, records = served
    api = client(server.url)
    placed = api.query_private("AddOrder", {"pair": "XBTUSD", "type": "sell", "ordertype": "stop-loss",
                                            "price": "42000", "volume": "0.1"})
    assert placed["error"] == []
    txid = placed["result"]["txid"][0]

    above = requests.post(f"{server.url}/admin/price", json={"pair": "BTC/USD", "price": "42500"}, timeout=5)
    assert above.status_code == 200 and above.json() == {"pair": "XXBTZUSD", "price": "42500.0", "trades": []}
    crash = requests.post(f"{server.url}/admin/price", data='{"pair": "XBTUSD", "price": 41900.5, "volume": 2}',
                          headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=5)   # curl -d
    assert crash.status_code == 200
    assert [t["ordertxid"] for t in crash.json()["trades"]] == [txid]
    assert api.query_private("QueryOrders", {"txid": txid})["result"][txid]["status"] == "closed"
    assert exchange.last_price("BTC/USD") == D("41900.5")
    form = requests.post(f"{server.url}/admin/price", data={"pair": "BTC/USD", "price": "41950"}, timeout=5)
    assert form.json()["price"] == "41950.0"
    assert requests.get(f"{server.url}/admin/price", timeout=5).json()["prices"]["XXBTZUSD"] == "41950.0"
    ticker = api.query_public("Ticker", {"pair": "XBTUSD"})["result"]["XXBTZUSD"]
    assert ticker["c"][0] == "41950.0"
    api.close()
    assert [(r.http_method, r.path, r.status) for r in records if r.path.startswith("/admin")][:2] == \
        [("POST", "/admin/price", 200), ("POST", "/admin/price", 200)]


@pytest.mark.parametrize(("body", "status", "error"), [
    (b'{"pair": "BTC/USD"}', 400, "missing price"),
    (b'{"pair": "DOGE/USD", "price": "1"}', 400, "EQuery:Unknown asset pair"),
    (b'{"pair": "BTC/USD", "price": "cheap"}', 400, "is not a number"),
    (b'{"pair": "BTC/USD", "price": "-1"}', 400, "must be positive"),
    (b'{"pair": "BTC/USD", "price": "1", "volume": "-2"}', 400, "volume: must be >= 0"),
    (b'{"pair": ', 400, "a JSON object"),
])
def test_admin_refuses_a_bad_price_with_a_reason(body: bytes, status: int, error: str) -> None:
    admin = Admin(PaperExchange(prices={"BTC/USD": "43000"}))
    reply = admin.handle("POST", "/admin/price", body, "127.0.0.1")
    assert reply.status == status and error in json.loads(reply.body)["error"]


def test_admin_answers_loopback_clients_and_its_own_paths_only() -> None:
    admin = Admin(PaperExchange(prices={"BTC/USD": "43000"}))
    assert admin.handle("POST", "/admin/price", b'{"pair":"BTC/USD","price":"1"}', "10.0.0.7").status == 403
    assert admin.handle("GET", "/admin/price", b"", "::1").status == 200
    assert admin.handle("GET", "/admin/reset", b"", "127.0.0.1").status == 404


def test_a_replay_plays_every_tick_at_its_pace_and_stops_when_told(served) -> None:
    exchange, server, _ = served
    ticks = [Tick(1000.0 + i, D("43000") + i, D("0.1")) for i in range(50)]
    finished: list[tuple[int, str | None]] = []
    replay = Replay(exchange, "BTC/USD", ticks, speed=1e6, on_done=lambda n, e: finished.append((n, e))).start()
    assert replay.wait(10)
    assert finished == [(50, None)] and exchange.last_price("BTC/USD") == D("43049")
    trades = requests.get(f"{server.url}/0/public/Trades", params={"pair": "XBTUSD"}, timeout=5).json()
    assert len(trades["result"]["XXBTZUSD"]) == 50

    slow = Replay(exchange, "BTC/USD", [Tick(0.0, D("1"), D(0)), Tick(3600.0, D("2"), D(0))], speed=1.0,
                  on_done=lambda n, e: finished.append((n, e))).start()
    slow.stop(5)                                 # does not wait out the hour-long gap
    assert slow.wait(0) and slow.played <= 1 and len(finished) == 1
    with pytest.raises(Exception, match="Unknown asset pair"):
        Replay(exchange, "DOGE/USD", ticks)


def test_the_request_log_names_method_path_status_and_krakens_errors(served) -> None:
    _, server, records = served
    requests.get(f"{server.url}/0/public/Ticker", params={"pair": "XBTUSD"}, timeout=5)
    requests.get(f"{server.url}/0/public/Nope", timeout=5)
    ticker, nope = records[-2:]
    assert (ticker.http_method, ticker.path, ticker.status, ticker.errors) == \
        ("GET", "/0/public/Ticker?pair=XBTUSD", 200, ())
    assert nope.errors == ("EGeneral:Unknown method",)
    assert nope.line().startswith("127.0.0.1 GET /0/public/Nope -> 200 EGeneral:Unknown method (")
