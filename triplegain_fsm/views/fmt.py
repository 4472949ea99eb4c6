"""Numbers for people: prices at the pair's decimals, never in exponent notation."""
from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from typing import Any

DEFAULT_PRICE_DECIMALS = 2


@lru_cache(maxsize=64)
def pair_decimals(symbol: str | None) -> int:
    """Kraken's price decimals for a pair (BTC/USD: 1); 2 for a pair the paper exchange does not know."""
    from triplegain_fsm.paper.pairs import PairRegistry, build_specs

    spec = PairRegistry(build_specs(None)).find(symbol) if symbol else None
    return spec.pair_decimals if spec is not None else DEFAULT_PRICE_DECIMALS


def price(value: Any, decimals: int = DEFAULT_PRICE_DECIMALS, *, grouping: bool = True) -> str:
    """43176.09999049359 -> '43,176.1' at 1 decimal; '-' for nothing; never '4.3E+4'."""
    if value is None or value == "":
        return "-"
    exact = Decimal(value).quantize(Decimal(1).scaleb(-decimals))
    return format(exact, ",f" if grouping else "f")


def pair_price(value: Any, symbol: str | None, *, grouping: bool = True) -> str:
    return price(value, pair_decimals(symbol), grouping=grouping)


def money(value: Any, places: int = 2) -> str:
    return price(value, places)


def amount(value: Any) -> str:
    """A size as exact text without trailing zeros or exponent (0.11630000 -> 0.1163, 4.3E+4 -> 43000)."""
    if value is None or value == "":
        return "-"
    return format(Decimal(value).normalize(), "f")


def level_pct(pct: Any, *, side: str, stop: bool) -> str:
    """A stop or target given in percent, signed by the position's side: a short's stop is above (+)."""
    long = str(side).lower() == "buy"
    below = long if stop else not long
    return f"{'-' if below else '+'}{amount(pct)}%"
