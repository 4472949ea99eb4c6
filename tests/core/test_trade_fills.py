"""Fills are exchange trades: one row per trade id, per-trade figures, fees in quote (issue 11 #2, issue 12 #2).

Driven through the public API against the paper exchange; the stream's reports
are fed through the same mutator the stream client uses (`orders.apply_stream`).
"""
from __future__ import annotations

from decimal import Decimal as D

from triplegain_fsm.enums import OrderStatus
from triplegain_fsm.executions import from_stream
from triplegain_fsm.models import TradeProposal


def buy(size: str = "430", entry: str | None = "43000", sl: str = "41000", tp: str | None = "48000") -> TradeProposal:
    return TradeProposal(symbol="BTC/USD", side="buy", size_usd=D(size), entry_price=D(entry) if entry else None,
                         stop_loss=D(sl), take_profit=D(tp) if tp else None)


def exchange_trades(core, txid: str) -> dict[str, dict]:
    return {tid: t for tid, t in core.paper.trades().items() if t["ordertxid"] == txid}


def stream_trade(txid: str, trade_id: str, trade: dict, cl_ord_id: str | None = None, fee_asset: str = "USD",
                 fee: str | None = None) -> tuple[dict, dict]:
    report = {"exec_type": "trade", "order_id": txid, "exec_id": trade_id, "last_qty": D(trade["vol"]),
              "last_price": D(trade["price"]), "cost": D(trade["cost"]),
              "fees": [{"asset": fee_asset, "qty": D(fee if fee is not None else trade["fee"])}],
              "order_status": "partially_filled"}
    merged = {**report, "cl_ord_id": cl_ord_id} if cl_ord_id else report
    return report, merged


def test_every_order_asks_for_fees_in_quote_and_records_the_asset_charged(make_core):
    core = make_core()
    result = core.orders.execute_trade(buy(entry=None, tp=None))
    core.poll_once()
    sent = [c for c in core.paper.calls.all() if c.method == "AddOrder"]
    assert sent and all("fciq" in c.params["oflags"].split(",") for c in sent)   # the entry and its stop
    order = result.order
    assert order.status is OrderStatus.FILLED and order.fee_currency == "ZUSD"
    [fill] = core.store.fills(order.id)
    [(trade_id, trade)] = exchange_trades(core, order.external_id).items()
    assert fill["fill_key"] == trade_id and fill["fee_asset"] == "ZUSD" and fill["source"] == "rest"
    assert (D(fill["qty"]), D(fill["price"]), D(fill["cost"]), D(fill["fee"])) == \
        (D(trade["vol"]), D(trade["price"]), D(trade["cost"]), D(trade["fee"]))


def test_two_trades_inside_one_poll_are_booked_per_trade_from_query_trades(make_core):
    core = make_core(price="43100", paper={"liquidity_per_tick": "0.004"})
    result = core.orders.execute_trade(buy())
    order = result.order
    core.price_tick("BTC/USD", D("42990"))
    core.price_tick("BTC/USD", D("42985"))       # two trades at the exchange, no poll between them
    before = len(core.paper.calls)
    core.poll_once()
    methods = [c.method for c in core.paper.calls.all()[before:]]
    assert "QueryTrades" in methods
    trades = exchange_trades(core, order.external_id)
    assert len(trades) == 2 and order.filled_size == D("0.008")
    fills = {f["fill_key"]: f for f in core.store.fills(order.id)}
    assert set(fills) == set(trades)
    for trade_id, trade in trades.items():
        assert (D(fills[trade_id]["qty"]), D(fills[trade_id]["cost"]), D(fills[trade_id]["fee"])) == \
            (D(trade["vol"]), D(trade["cost"]), D(trade["fee"]))
    assert order.filled_cost == sum(D(t["cost"]) for t in trades.values())
    assert order.fee_amount == sum(D(t["fee"]) for t in trades.values())


def test_one_new_trade_per_poll_needs_no_query_trades(make_core):
    core = make_core(price="43100", paper={"liquidity_per_tick": "0.004"})
    result = core.orders.execute_trade(buy())
    before = len(core.paper.calls)
    for _ in range(3):
        core.price_tick("BTC/USD", D("42990"))
        core.poll_once()
    assert "QueryTrades" not in [c.method for c in core.paper.calls.all()[before:]]
    assert set(f["fill_key"] for f in core.store.fills(result.order.id)) == \
        set(exchange_trades(core, result.order.external_id))


def test_query_trades_failing_books_nothing_then_everything_once(make_core):
    core = make_core(price="43100", paper={"liquidity_per_tick": "0.004"})
    result = core.orders.execute_trade(buy())
    core.price_tick("BTC/USD", D("42990"))
    core.price_tick("BTC/USD", D("42985"))
    core.paper.faults.fail_next("QueryTrades", "EService:Unavailable", times=20)   # past the read retries
    report = core.poll_once()
    core.paper.faults.clear()
    assert result.order.filled_size == 0 and any("QueryTrades" in e for e in report.errors)   # nothing guessed
    core.poll_once()
    assert result.order.filled_size == D("0.008") and len(core.store.fills(result.order.id)) == 2


def test_a_trade_pushed_by_the_stream_and_polled_again_counts_once(make_core):
    core = make_core(price="43100", paper={"liquidity_per_tick": "0.004"})
    result = core.orders.execute_trade(buy())
    order = result.order
    core.price_tick("BTC/USD", D("42990"))
    [(trade_id, trade)] = exchange_trades(core, order.external_id).items()
    report, merged = stream_trade(order.external_id, trade_id, trade)
    assert core.orders.apply_stream(from_stream(report, merged)) == 1
    assert core.orders.apply_stream(from_stream(report, merged)) == 0    # a snapshot replays it
    core.poll_once()                                                    # REST lists the same trade id
    assert order.filled_size == D("0.004") and len(core.store.fills(order.id)) == 1
    assert core.store.fills(order.id)[0]["source"] == "stream"
    position = core.positions.get_position(result.position_id)
    assert position.size == D("0.004") and position.total_fees == D(trade["fee"])


def test_a_stream_report_before_the_add_order_answer_is_matched_by_client_order_id(make_core):
    core = make_core()
    pushed: list[int] = []

    def push_fill_while_sending() -> None:   # the exchange filled it and the stream said so first
        txid = list(core.paper.trades().values())[-1]["ordertxid"]
        order = core.paper.order(txid)
        trades = exchange_trades(core, txid)
        for trade_id, trade in trades.items():
            report, merged = stream_trade(txid, trade_id, trade, cl_ord_id=order.get("cl_ord_id"))
            pushed.append(core.orders.apply_stream(from_stream(report, merged)))

    core.paper.faults.during_next("AddOrder", push_fill_while_sending)
    result = core.orders.execute_trade(buy(entry=None, tp=None))
    assert pushed == [1]
    order = result.order
    assert order.status is OrderStatus.FILLED and order.external_id is not None
    assert len(core.store.fills(order.id)) == 1
    assert [e["trigger"] for e in core.store.events(order.id)].count("acknowledge") == 1


def test_a_fee_charged_in_base_shrinks_the_position_and_its_stop(make_core):
    core = make_core(price="43100", paper={"liquidity_per_tick": "0.004"})
    result = core.orders.execute_trade(buy(tp=None))
    order = result.order
    core.price_tick("BTC/USD", D("42990"))
    [(trade_id, trade)] = exchange_trades(core, order.external_id).items()
    report, merged = stream_trade(order.external_id, trade_id, trade, fee_asset="XBT", fee="0.00001")
    assert core.orders.apply_stream(from_stream(report, merged)) == 1
    position = core.positions.get_position(result.position_id)
    assert position.size == D("0.00399")                 # bought 0.004, the fee took 0.00001 of it
    assert order.fee_currency == "XBT" and order.filled_size == D("0.004")
    assert position.total_fees == D("0.00001") * D(trade["price"])
    [fill] = core.store.fills(order.id)
    assert fill["fee_asset"] == "XBT" and D(fill["fee"]) == D("0.00001")
    core.poll_once()
    stops = [o for o in core.orders.working_for_position(position.id) if o.role.value == "stop_loss"]
    assert stops and all(s.size <= position.size for s in stops)


# -- spot take-profits: no refused order by design (issue 11 #6) --------------------------------------------

def test_a_spot_take_profit_without_free_coins_is_kept_local_without_any_add_order(make_core):
    core = make_core()
    result = core.orders.execute_trade(buy(entry=None))
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    assert position.state == "PROTECTED" and position.take_profit_location.value == "local"
    sent = [c for c in core.paper.calls.all() if c.method == "AddOrder"]
    assert len(sent) == 2 and "BalanceEx" in [c.method for c in core.paper.calls.all()]   # entry + stop only
    assert not core.store.load_orders("state = 'REJECTED'")


def test_a_spot_take_profit_goes_to_the_exchange_when_free_coins_cover_it(make_core):
    core = make_core(paper={"balances": {"ZUSD": "1000000", "XXBT": "1"}})
    result = core.orders.execute_trade(buy(entry=None))
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    assert position.take_profit_location.value == "exchange"
    tp = core.orders.get_order(position.take_profit_order_id)
    assert tp.state == "OPEN" and tp.size == position.size
    assert not core.store.load_orders("state = 'REJECTED'")


# -- dust (issue 11 #3) --------------------------------------------------------------------------------------

def test_a_remainder_below_the_minimum_order_is_closed_out_as_dust(make_core, collect):
    core = make_core(price="43100", paper={"liquidity_per_tick": "0.00005"})
    _, alerts = collect(core)
    result = core.orders.execute_trade(buy(tp=None))
    core.price_tick("BTC/USD", D("42990"))          # 0.00005 BTC filled: below Kraken's 0.0001 minimum
    core.poll_once()
    assert core.orders.cancel_order(result.order.id)  # the rest of the entry is cancelled
    core.poll_once()
    position = core.positions.get_position(result.position_id)
    assert position.state == "CLOSED" and position.size == 0 and position.dust_size == D("0.00005")
    assert [a.payload for a in alerts if a.payload["alert_type"] == "dust_left"][0]["amount"] == D("0.00005")
    stops = [o for o in core.store.load_orders("position_id = ?", (position.id,)) if o.role.value == "stop_loss"]
    assert stops == []                                # no order Kraken must refuse was sent


def test_an_order_the_exchange_forgot_does_not_hide_the_others_in_its_batch(make_core):
    core = make_core(price="43100", limits={"max_open_positions": 5, "max_positions_per_symbol": 5})
    results = [core.orders.execute_trade(buy(entry=str(43000 - i))) for i in range(4)]
    forgotten = results[0].order
    core.paper.engine._state.orders.pop(forgotten.external_id)     # the exchange no longer knows it
    core.price_tick("BTC/USD", D("42990"))                         # the other three fill
    report = core.poll_once()
    assert [r.order.status for r in results[1:]] == [OrderStatus.FILLED] * 3
    assert any(forgotten.external_id in e for e in report.errors)   # and the forgotten one is named
