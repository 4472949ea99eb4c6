"""What the WebSocket v2 stream client costs: memory per cached order, CPU per message, loopback latency.

Run: python benchmarks/bench_stream.py

1. Bytes per cached order: N full order descriptions (as Kraken's `pending_new` /
   snapshot reports carry them, parsed from JSON text with Decimals) merged into the
   stream's OrderCache; tracemalloc measures what the cache keeps once the parsed
   messages and delivered views are gone. Then every order gets a final status and
   the cache must give the memory back.
2. µs per message, parse (JSON -> dicts with Decimals) + merge (each report into the
   cache, raw and merged views built): a sparse one-trade fill update, and a new
   order's two-report update (`pending_new` full + `new`).
3. Loopback latency, exchange fill -> on_batch: the paper exchange fills a resting
   order (`set_price`), the real ExecutionStream receives the trade over a loopback
   WebSocket; median and p95 (the loopback echo floor here is ~120 µs, LIBRARY-NOTES).
Figures, not asserts: timings vary by machine.
"""
from __future__ import annotations

import gc
import statistics
import threading
import time
import tracemalloc

from triplegain_fsm.kraken.stream import ExecutionStream
from triplegain_fsm.kraken.stream_cache import OrderCache
from triplegain_fsm.kraken.stream_wire import loads
from triplegain_fsm.paper import ManualClock, PaperExchange
from triplegain_fsm.paper.params import parse_add_order

FULL = ('{{"exec_type":"pending_new","order_status":"pending_new","order_id":"O{i:05d}-ABCDE-FGHIJK",'
        '"symbol":"BTC/USD","side":"sell","order_type":"stop-loss-limit","order_qty":0.01250000,'
        '"limit_price":41990.5,"limit_price_type":"static","triggers":{{"reference":"last","price":42000.1,'
        '"price_type":"static","status":"untriggered"}},"cl_ord_id":"6d1b345e-2821-40e2-ad83-4ecb18a{i:05d}",'
        '"time_in_force":"gtc","post_only":false,"reduce_only":true,"margin":false,"cum_qty":0,"cum_cost":0,'
        '"timestamp":"2024-05-01T12:00:00.123456Z"}}')
NEW = ('{{"exec_type":"new","order_status":"new","order_id":"O{i:05d}-ABCDE-FGHIJK",'
       '"timestamp":"2024-05-01T12:00:00.123456Z"}}')
TRADE_MESSAGE = ('{"channel":"executions","type":"update","sequence":7,"data":[{"exec_type":"trade",'
                 '"order_status":"partially_filled","order_id":"O00001-ABCDE-FGHIJK","exec_id":"TXXXXX-YYYYY-ZZZZZZ",'
                 '"trade_id":123456789,"last_qty":0.00400000,"last_price":42000.1,"cost":168.0004,'
                 '"fees":[{"asset":"USD","qty":0.43680104}],"liquidity_ind":"m","cum_qty":0.00800000,'
                 '"cum_cost":336.0008,"avg_price":42000.1,"fee_usd_equiv":0.87360208,'
                 '"timestamp":"2024-05-01T12:00:01.654321Z"}]}')


def memory_per_order(n: int = 5000) -> None:
    texts = [FULL.format(i=i) for i in range(n)]
    cache = OrderCache()
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for text in texts:
        cache.merge(loads(text))
    gc.collect()
    kept = tracemalloc.get_traced_memory()[0] - before
    for i in range(n):
        cache.merge({"order_id": f"O{i:05d}-ABCDE-FGHIJK", "order_status": "canceled"})
    gc.collect()
    left = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    print(f"1. memory: {n} cached orders keep {kept / n:,.0f} bytes each (a full stop-loss-limit "
          f"description, {len(texts[0])} bytes of JSON); after their final status: {len(cache)} cached, "
          f"{max(left, 0) / 1024:,.1f} KiB left (the emptied dict's table: dicts never shrink)")


def per_message_us(text: str, cache: OrderCache, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        for report in loads(text)["data"]:
            cache.merge(report)
    return (time.perf_counter() - start) / n * 1e6


def cpu_per_message(n: int = 20000) -> None:
    cache = OrderCache()
    cache.merge(loads(FULL.format(i=1)))
    fill = per_message_us(TRADE_MESSAGE, cache, n)
    new_order = ('{"channel":"executions","type":"update","sequence":3,"data":['
                 + FULL.format(i=2) + "," + NEW.format(i=2) + "]}")
    placed = per_message_us(new_order, cache, n)
    parse_only = min(timeit_loads(TRADE_MESSAGE, n) for _ in range(3))
    print(f"2. cpu: parse+merge a one-trade fill update {fill:.1f} µs (JSON parse alone {parse_only:.1f} µs); "
          f"a new order's pending_new+new update {placed:.1f} µs")


def timeit_loads(text: str, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        loads(text)
    return (time.perf_counter() - start) / n * 1e6


def loopback_latency(fills: int = 200) -> None:
    exchange = PaperExchange(clock=ManualClock(), prices={"BTC/USD": "43000"},
                             balances={"ZUSD": "10000000", "XXBT": "2"}, seed=1)
    server = exchange.serve_ws(heartbeat_interval=1.0)
    arrived = threading.Event()
    received: dict[str, float] = {}

    def on_batch(batch) -> None:
        for report in batch.reports:
            if report.is_trade and report.order_id not in received:
                received[report.order_id] = time.perf_counter()
                arrived.set()

    stream = ExecutionStream(server.url, lambda: str(exchange.ws_tokens.issue()["token"]), on_batch,
                             lambda state, reason: None)
    stream.start()
    try:
        assert stream.wait_connected(10), stream.reason
        latencies = []
        for _ in range(fills):
            params = {"pair": "XBTUSD", "type": "buy", "ordertype": "limit", "price": "42000", "volume": "0.01"}
            order_id = exchange.engine.add_order(parse_add_order(params))["txid"][0]
            arrived.clear()
            start = time.perf_counter()
            exchange.set_price("BTC/USD", "41990")
            if not arrived.wait(5) or order_id not in received:
                raise RuntimeError("a fill never reached on_batch")
            latencies.append((received[order_id] - start) * 1e6)
            exchange.set_price("BTC/USD", "43000")
        latencies.sort()
        p95 = latencies[int(len(latencies) * 0.95) - 1]
        print(f"3. loopback: exchange fill -> on_batch, {fills} fills: median {statistics.median(latencies):.0f} µs, "
              f"p95 {p95:.0f} µs (set_price itself included; echo floor ~120 µs)")
    finally:
        stream.stop()
        server.shutdown()


def main() -> None:
    memory_per_order()
    cpu_per_message()
    loopback_latency()


if __name__ == "__main__":
    main()
