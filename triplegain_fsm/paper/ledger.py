"""Spot balances and the part of each that resting orders hold.

Kraken reserves funds for every open order (BalanceEx `hold_trade`): a resting
sell holds its base volume, a resting buy the quote it may spend. Available =
balance - hold_trade, and an order that needs more than is available is refused
with `EOrder:Insufficient funds` -- which is why a second full-size sell leg on
the same coins is refused.
"""
from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal

ZERO = Decimal(0)


class Ledger:
    """Balances and holds per asset id. Not locked itself: the engine's lock covers it."""

    def __init__(self, balances: Mapping[str, Decimal] | None = None) -> None:
        self._balance: dict[str, Decimal] = dict(balances or {})
        self._hold: dict[str, Decimal] = {}

    def balance(self, asset: str) -> Decimal:
        return self._balance.get(asset, ZERO)

    def hold(self, asset: str) -> Decimal:
        return self._hold.get(asset, ZERO)

    def available(self, asset: str) -> Decimal:
        return self.balance(asset) - self.hold(asset)

    def add(self, asset: str, amount: Decimal) -> None:
        """Credit (positive) or debit (negative) a balance; margin losses may take it below zero."""
        self._balance[asset] = self.balance(asset) + amount

    def add_hold(self, asset: str, amount: Decimal) -> None:
        self._hold[asset] = self.hold(asset) + amount

    def assets(self) -> list[str]:
        return sorted(set(self._balance) | set(self._hold))

    def balances(self) -> dict[str, Decimal]:
        return {asset: self.balance(asset) for asset in self.assets()}

    def holds(self) -> dict[str, Decimal]:
        return {asset: self.hold(asset) for asset in self.assets()}
