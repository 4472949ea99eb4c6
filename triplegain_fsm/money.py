"""Decimal coercion for every amount that crosses a boundary.

Money never passes through float: a float already carries the rounding error
we are trying to keep out, so it is refused rather than converted.
"""
from __future__ import annotations

from decimal import ROUND_DOWN, ROUND_UP, Decimal, InvalidOperation
from typing import Any

from triplegain_fsm.errors import ValidationError

ZERO = Decimal(0)
# No price, size or fee this core handles comes near this; anything beyond is junk, and beyond
# Decimal's 28 significant digits rounding to a tick would fail instead of erring loudly.
LIMIT = Decimal(10) ** 15


def to_decimal(value: Any, name: str) -> Decimal:
    """Coerce an int, str or Decimal to a finite Decimal; anything else is an error naming the field."""
    if isinstance(value, (bool, float)):
        raise ValidationError(f"{name}: {type(value).__name__} is not accepted for money, pass Decimal or str")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, (int, str)):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise ValidationError(f"{name}: {value!r} is not a number") from None
    else:
        raise ValidationError(f"{name}: {type(value).__name__} is not a number")
    if not result.is_finite():
        raise ValidationError(f"{name}: {value!r} is not finite")
    if abs(result) >= LIMIT:
        raise ValidationError(f"{name}: {value!r} is out of range (|x| < 1e15)")
    return result


def optional_decimal(value: Any, name: str) -> Decimal | None:
    return None if value is None else to_decimal(value, name)


def positive(value: Any, name: str) -> Decimal:
    result = to_decimal(value, name)
    if result <= 0:
        raise ValidationError(f"{name}: must be positive, got {result}")
    return result


def round_to_step(value: Decimal, step: Decimal, up: bool) -> Decimal:
    """Round to a multiple of `step`, up or down: callers choose the safe side."""
    try:
        units = (value / step).quantize(Decimal(1), rounding=ROUND_UP if up else ROUND_DOWN)
    except InvalidOperation:
        raise ValidationError(f"{value} cannot be rounded to a step of {step}: out of range") from None
    if not units:
        return ZERO
    result = (units * step).normalize()
    exponent = result.as_tuple().exponent
    # normalize() writes 44100 as 4.41E+4: same value, but every printed price would show it
    return result.quantize(Decimal(1)) if isinstance(exponent, int) and exponent > 0 else result


def round_to_decimals(value: Decimal, decimals: int, up: bool = False) -> Decimal:
    return round_to_step(value, Decimal(1).scaleb(-decimals), up)
