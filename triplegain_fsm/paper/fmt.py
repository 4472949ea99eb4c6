"""Numbers and times in Kraken's wire format.

Kraken sends every amount as a string with a fixed number of decimals per pair or
asset ("1.25000000", "30010.0"), and times as unix seconds or RFC 3339. The
engine keeps exact Decimals; these helpers are the only place they become text.
"""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal, InvalidOperation

from triplegain_fsm.paper.errors import KrakenRejection

ZERO = Decimal(0)


def step(places: int) -> Decimal:
    return Decimal(1).scaleb(-places)


def fmt(value: Decimal, places: int) -> str:
    """`value` with exactly `places` decimals, never "-0.000" (Kraken has no negative zero)."""
    return format(value.quantize(step(places), rounding=ROUND_HALF_EVEN) + ZERO, "f")


def quantize(value: Decimal, places: int, *, down: bool = False, half_up: bool = False) -> Decimal:
    rounding = ROUND_DOWN if down else ROUND_HALF_UP if half_up else ROUND_HALF_EVEN
    return value.quantize(step(places), rounding=rounding)


def decimal_places(value: Decimal) -> int:
    """Decimals actually used (trailing zeros ignored): what Kraken's precision check counts."""
    exponent = value.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def parse_number(text: str, error: str) -> Decimal:
    """A finite Decimal from wire text; anything else is the given Kraken error."""
    try:
        value = Decimal(text.strip())
    except (InvalidOperation, AttributeError):
        raise KrakenRejection(error) from None
    if not value.is_finite():
        raise KrakenRejection(error)
    return value


def timestamp(value: float) -> float:
    """Kraken's order/trade times: unix seconds as a JSON number with 4 decimals."""
    return round(value, 4)


def rfc3339(value: float) -> str:
    return datetime.fromtimestamp(value, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc1123(value: float) -> str:
    return datetime.fromtimestamp(value, timezone.utc).strftime("%a, %d %b %y %H:%M:%S +0000")


def parse_rfc3339(text: str) -> float:
    """Unix seconds from an RFC 3339 time; `Z` accepted on every Python this supports."""
    normalized = text.strip().replace("z", "Z")
    if normalized.endswith("Z"):
        normalized = normalized[:-1] + "+00:00"
    parsed = datetime.fromisoformat(normalized)
    if parsed.tzinfo is None:
        raise ValueError(f"{text!r} has no timezone")
    return parsed.timestamp()
