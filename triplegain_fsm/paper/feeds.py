"""Price paths to drive the paper exchange: real trade prints, and a generated flash crash.

The CSVs in `triplegain_fsm/data/` are public trade prints (see its README); they
give real tick rates and path shapes. Real data lacks the scenario that hurts
most -- a fast crash through the stops and a recovery -- so `flash_crash_series()`
generates one, deterministically from a seed, with integer tick steps so no
float ever touches a price.
"""
from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterator
from decimal import Decimal
from importlib import resources
from typing import Any

import attrs

from triplegain_fsm.money import to_decimal

DATA_PACKAGE = "triplegain_fsm"
BCHEUR = "kraken_bcheur_trades.csv"
BCHEUR_Q2 = "kraken_bcheur_trades_q2.csv"
XRP_ETH = "xrp_eth_trades.csv"


@attrs.frozen
class Tick:
    time: float          # unix seconds
    price: Decimal
    volume: Decimal      # base volume of the print (liquidity the tick represents)


def _rows(name: str) -> Iterator[dict[str, str]]:
    text = resources.files(DATA_PACKAGE).joinpath("data").joinpath(name).read_text(encoding="utf-8")
    yield from csv.DictReader(io.StringIO(text))


def load_kraken_trades(name: str = BCHEUR, *, scale: Any = 1) -> list[Tick]:
    """Kraken trade-history CSV (`unix_time,price,volume`); prices multiplied by `scale`."""
    factor = to_decimal(scale, "scale")
    return [Tick(seconds(r["unix_time"]), Decimal(r["price"]) * factor, Decimal(r["volume"])) for r in _rows(name)]


def load_bcheur(*, q2: bool = False, scale: Any = 1) -> list[Tick]:
    """Kraken BCH/EUR prints, Jan 2023 (148 rows, or 486 for the ~22 h `q2` file)."""
    return load_kraken_trades(BCHEUR_Q2 if q2 else BCHEUR, scale=scale)


def load_xrp_eth(*, scale: Any = 1) -> list[Tick]:
    """XRP/ETH public prints, Oct 2019 (12,477 rows, `timestamp_ms,trade_id,side,price,amount,cost`)."""
    factor = to_decimal(scale, "scale")
    return [
        Tick(int(r["timestamp_ms"]) / 1000, Decimal(r["price"]) * factor, Decimal(r["amount"]))
        for r in _rows(XRP_ETH)
    ]


def flash_crash_series(
    *,
    seed: int = 7,
    start_price: Any = "43000",
    ticks: int = 600,
    crash_at: int = 300,
    depth: Any = "0.12",
    crash_ticks: int = 4,
    recovery_ticks: int = 60,
    start_time: float = 1_700_000_000.0,
    interval: float = 1.0,
    tick_size: Any = "0.1",
    max_step_ticks: int = 50,
) -> list[Tick]:
    """A BTC/USD-like random walk around `start_price` that drops by `depth` over `crash_ticks`
    ticks starting at index `crash_at`, then climbs back to the pre-crash level over
    `recovery_ticks` ticks and walks on. Same seed, same series.
    """
    if not 0 < crash_at < crash_at + crash_ticks + recovery_ticks <= ticks:
        raise ValueError("flash_crash_series: crash_at + crash_ticks + recovery_ticks must fit inside ticks")
    rng = random.Random(seed)
    step = to_decimal(tick_size, "tick_size")
    fall = to_decimal(depth, "depth")
    price = to_decimal(start_price, "start_price")
    prices: list[Decimal] = []
    while len(prices) < crash_at:
        price += rng.randint(-max_step_ticks, max_step_ticks) * step
        prices.append(price)
    before = price
    bottom = _on_grid(before * (1 - fall), step)
    for i in range(1, crash_ticks + 1):
        prices.append(_on_grid(before - (before - bottom) * i / crash_ticks, step))
    for i in range(1, recovery_ticks + 1):
        noise = rng.randint(-max_step_ticks, max_step_ticks) * step if i < recovery_ticks else 0
        prices.append(_on_grid(bottom + (before - bottom) * i / recovery_ticks, step) + noise)
    price = prices[-1]
    while len(prices) < ticks:
        price += rng.randint(-max_step_ticks, max_step_ticks) * step
        prices.append(price)
    crash = range(crash_at, crash_at + crash_ticks)
    return [
        Tick(start_time + i * interval, p, Decimal(rng.randint(50, 400) if i in crash else rng.randint(1, 40)) / 100)
        for i, p in enumerate(prices)
    ]


def _on_grid(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value() * step


def seconds(text: str) -> float:
    """A timestamp: time is the one quantity here that is not money."""
    return float(text)  # float-ok: seconds
