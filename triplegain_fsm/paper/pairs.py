"""Kraken's pair and asset metadata, and the name look-ups Kraken does.

The engine validates orders against these numbers (decimals, minimums, tick size,
allowed leverage, fee tiers), and AssetPairs / Assets serve them back with
Kraken's field names, so the core reads the same facts from the paper exchange as
from Kraken. Kraken accepts a pair by id (`XXBTZUSD`), altname (`XBTUSD`) or
wsname (`XBT/USD`), and the core speaks `BTC/USD`: `PairRegistry.resolve` handles
all four; everything else works with canonical ids.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import attrs

from triplegain_fsm.paper.errors import UNKNOWN_ASSET, UNKNOWN_PAIR, KrakenRejection

# Common names Kraken spells differently.
SYMBOL_ALIASES = {"BTC": "XBT", "DOGE": "XDG"}

_TAKER_TIERS = (
    (0, "0.26"), (50000, "0.24"), (100000, "0.22"), (250000, "0.2"), (500000, "0.18"),
    (1000000, "0.16"), (2500000, "0.14"), (5000000, "0.12"), (10000000, "0.1"),
)
_MAKER_TIERS = (
    (0, "0.16"), (50000, "0.14"), (100000, "0.12"), (250000, "0.1"), (500000, "0.08"),
    (1000000, "0.06"), (2500000, "0.04"), (5000000, "0.02"), (10000000, "0"),
)


def _tiers(rows: Iterable[Iterable[Any]]) -> tuple[tuple[int, Decimal], ...]:
    return tuple((int(volume), Decimal(str(pct))) for volume, pct in rows)


def _ints(values: Iterable[Any]) -> tuple[int, ...]:
    return tuple(int(v) for v in values)


@attrs.frozen
class AssetSpec:
    """One Kraken asset: `XXBT` is shown to people as `XBT` and kept to 10 decimals."""

    id: str
    altname: str
    decimals: int
    display_decimals: int

    def to_kraken(self) -> dict[str, Any]:
        return {
            "aclass": "currency", "altname": self.altname, "decimals": self.decimals,
            "display_decimals": self.display_decimals, "status": "enabled",
        }


KNOWN_ASSETS = {
    a.id: a for a in (
        AssetSpec("XXBT", "XBT", 10, 5), AssetSpec("XETH", "ETH", 10, 5), AssetSpec("XXRP", "XRP", 8, 5),
        AssetSpec("ZUSD", "USD", 4, 2), AssetSpec("ZEUR", "EUR", 4, 2), AssetSpec("BCH", "BCH", 10, 5),
        AssetSpec("USDT", "USDT", 8, 4), AssetSpec("SOL", "SOL", 10, 5), AssetSpec("XXDG", "XDG", 8, 2),
    )
}


@attrs.frozen
class PairSpec:
    """One AssetPairs entry, typed. Fee tiers are `(30-day USD volume, percent)`."""

    id: str
    altname: str
    wsname: str
    base: str
    quote: str
    pair_decimals: int
    lot_decimals: int
    cost_decimals: int
    ordermin: Decimal
    costmin: Decimal
    tick_size: Decimal
    leverage_buy: tuple[int, ...] = ()
    leverage_sell: tuple[int, ...] = ()
    fees: tuple[tuple[int, Decimal], ...] = _tiers(_TAKER_TIERS)
    fees_maker: tuple[tuple[int, Decimal], ...] = _tiers(_MAKER_TIERS)
    status: str = "online"
    margin_call: int = 80
    margin_stop: int = 40

    @property
    def taker_pct(self) -> Decimal:
        """The entry tier: the paper account never builds up 30-day volume."""
        return self.fees[0][1]

    @property
    def maker_pct(self) -> Decimal:
        return self.fees_maker[0][1]

    def allowed_leverage(self, buy: bool) -> tuple[int, ...]:
        return self.leverage_buy if buy else self.leverage_sell

    def to_kraken(self) -> dict[str, Any]:
        return {
            "altname": self.altname, "wsname": self.wsname, "aclass_base": "currency", "base": self.base,
            "aclass_quote": "currency", "quote": self.quote, "lot": "unit",
            "cost_decimals": self.cost_decimals, "pair_decimals": self.pair_decimals,
            "lot_decimals": self.lot_decimals, "lot_multiplier": 1,
            "leverage_buy": list(self.leverage_buy), "leverage_sell": list(self.leverage_sell),
            "fees": [[v, p] for v, p in self.fees], "fees_maker": [[v, p] for v, p in self.fees_maker],
            "fee_volume_currency": "ZUSD", "margin_call": self.margin_call, "margin_stop": self.margin_stop,
            "ordermin": str(self.ordermin), "costmin": str(self.costmin), "tick_size": str(self.tick_size),
            "status": self.status,
        }

    @classmethod
    def from_kraken(cls, pair_id: str, entry: Mapping[str, Any]) -> PairSpec:
        """Build from an AssetPairs entry (Kraken's own, or one from `default_pairs()`)."""
        return cls(
            id=pair_id, altname=entry["altname"], wsname=entry["wsname"], base=entry["base"], quote=entry["quote"],
            pair_decimals=int(entry["pair_decimals"]), lot_decimals=int(entry["lot_decimals"]),
            cost_decimals=int(entry.get("cost_decimals", entry["pair_decimals"])),
            ordermin=Decimal(str(entry["ordermin"])), costmin=Decimal(str(entry.get("costmin", "0"))),
            tick_size=Decimal(str(entry.get("tick_size", Decimal(1).scaleb(-int(entry["pair_decimals"]))))),
            leverage_buy=_ints(entry.get("leverage_buy", ())), leverage_sell=_ints(entry.get("leverage_sell", ())),
            fees=_tiers(entry.get("fees", _TAKER_TIERS)), fees_maker=_tiers(entry.get("fees_maker", _MAKER_TIERS)),
            status=entry.get("status", "online"), margin_call=int(entry.get("margin_call", 80)),
            margin_stop=int(entry.get("margin_stop", 40)),
        )


def _default_specs() -> tuple[PairSpec, ...]:
    margin = (2, 3, 4, 5)
    return (
        PairSpec("XXBTZUSD", "XBTUSD", "XBT/USD", "XXBT", "ZUSD", 1, 8, 5, Decimal("0.0001"), Decimal("0.5"),
                 Decimal("0.1"), margin, margin),
        PairSpec("XETHZUSD", "ETHUSD", "ETH/USD", "XETH", "ZUSD", 2, 8, 5, Decimal("0.002"), Decimal("0.5"),
                 Decimal("0.01"), margin, margin),
        PairSpec("XXRPXETH", "XRPETH", "XRP/ETH", "XXRP", "XETH", 8, 8, 10, Decimal("10"), Decimal("0.0002"),
                 Decimal("0.00000001")),
        PairSpec("BCHEUR", "BCHEUR", "BCH/EUR", "BCH", "ZEUR", 2, 8, 5, Decimal("0.025"), Decimal("0.45"),
                 Decimal("0.01"), (2, 3), (2, 3)),
    )


def default_pairs() -> dict[str, dict[str, Any]]:
    """Realistic AssetPairs entries, keyed by canonical id, exactly as AssetPairs returns them."""
    return {spec.id: spec.to_kraken() for spec in _default_specs()}


def _alias(symbol: str) -> str:
    return SYMBOL_ALIASES.get(symbol.upper(), symbol.upper())


class PairRegistry:
    """Pairs and assets indexed every way Kraken accepts them (assets grow only from starting balances)."""

    def __init__(self, pairs: Iterable[PairSpec], assets: Mapping[str, AssetSpec] | None = None) -> None:
        self._pairs: dict[str, PairSpec] = {}
        self._assets: dict[str, AssetSpec] = dict(assets or {})
        self._index: dict[str, PairSpec] = {}
        for spec in pairs:
            self._pairs[spec.id] = spec
            for asset in (spec.base, spec.quote):
                self._assets.setdefault(asset, KNOWN_ASSETS.get(asset) or AssetSpec(asset, asset, 8, 5))
        for spec in self._pairs.values():
            base, quote = self._assets[spec.base].altname, self._assets[spec.quote].altname
            for key in (spec.id, spec.altname, spec.wsname, f"{base}/{quote}", f"{base}{quote}"):
                self._index[key.upper()] = spec

    @property
    def pairs(self) -> dict[str, PairSpec]:
        return dict(self._pairs)

    @property
    def assets(self) -> dict[str, AssetSpec]:
        return dict(self._assets)

    def find(self, name: str) -> PairSpec | None:
        """The pair for an id, altname, wsname or `BTC/USD`-style symbol; None if unknown."""
        key = name.strip().upper()
        if key in self._index:
            return self._index[key]
        if "/" in key:
            base, _, quote = key.partition("/")
            return self._index.get(f"{_alias(base)}/{_alias(quote)}")
        for alias, kraken in SYMBOL_ALIASES.items():
            if key.startswith(alias):
                return self._index.get(kraken + key[len(alias):])
        return None

    def resolve(self, name: str) -> PairSpec:
        spec = self.find(name)
        if spec is None:
            raise KrakenRejection(UNKNOWN_PAIR)
        return spec

    def asset(self, name: str) -> AssetSpec:
        """An asset by id (`XXBT`), altname (`XBT`) or common name (`BTC`)."""
        key = name.strip().upper()
        if key in self._assets:
            return self._assets[key]
        wanted = _alias(key)
        for asset in self._assets.values():
            if asset.altname == wanted:
                return asset
        raise KrakenRejection(UNKNOWN_ASSET)

    def asset_or_new(self, name: str) -> AssetSpec:
        """An asset for a starting balance: unknown codes are added rather than refused."""
        try:
            return self.asset(name)
        except KrakenRejection:
            spec = KNOWN_ASSETS.get(name.upper()) or AssetSpec(name.upper(), name.upper(), 8, 5)
            self._assets[spec.id] = spec
            return spec


def build_specs(pairs: Mapping[str, Mapping[str, Any]] | Iterable[PairSpec] | None) -> list[PairSpec]:
    """PairSpecs from AssetPairs-shaped entries, PairSpecs, or None for the defaults."""
    if pairs is None:
        return list(_default_specs())
    if isinstance(pairs, Mapping):
        return [v if isinstance(v, PairSpec) else PairSpec.from_kraken(k, v) for k, v in pairs.items()]
    return list(pairs)
