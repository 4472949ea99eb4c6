"""Kraken's pair metadata, and the one place that maps the bot's symbols to Kraken's names.

Kraken calls one market by up to four names: canonical id `XXBTZUSD` (trades,
positions, ticker), altname `XBTUSD` (order `descr.pair`, what we send), wsname
`XBT/USD`, and the bot says `BTC/USD`. Prefixes are NOT stripped by rule (`XRP` is a
real code, `XXRP` its legacy id): names come from AssetPairs itself, with only the two
documented asset aliases (BTC=XBT, DOGE=XDG) added for the bot's symbols.
"""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import attrs

from triplegain_fsm.enums import OrderSide
from triplegain_fsm.errors import UnknownSymbolError, ValidationError
from triplegain_fsm.kraken.errors import CostBelowMinimum, MalformedResponse, VolumeBelowMinimum
from triplegain_fsm.money import round_to_decimals, round_to_step, to_decimal

# Kraken asset code -> the code the bot uses. Only these two differ.
_BOT_NAME = {"XBT": "BTC", "XDG": "DOGE"}
_KRAKEN_NAME = {bot: kraken for kraken, bot in _BOT_NAME.items()}


@attrs.frozen
class PairInfo:
    """One AssetPairs entry, typed. Fees are percentages of the first (lowest-volume) tier."""

    id: str
    altname: str
    wsname: str
    base: str
    quote: str
    pair_decimals: int
    lot_decimals: int
    cost_decimals: int
    ordermin: Decimal
    costmin: Decimal | None
    tick_size: Decimal | None
    leverage_buy: tuple[int, ...]
    leverage_sell: tuple[int, ...]
    fee_taker: Decimal | None
    fee_maker: Decimal | None
    status: str

    @property
    def symbol(self) -> str:
        """The bot's name: wsname with Kraken's asset aliases undone (`XBT/USD` -> `BTC/USD`)."""
        return bot_symbol(self.wsname)

    @property
    def price_step(self) -> Decimal:
        return self.tick_size if self.tick_size is not None else Decimal(1).scaleb(-self.pair_decimals)

    @classmethod
    def from_asset_pairs(cls, pair_id: str, raw: Any) -> PairInfo:
        """Parse one entry of the AssetPairs result; anything missing or ill-typed is MalformedResponse."""
        if not isinstance(raw, Mapping):
            raise MalformedResponse(f"pair {pair_id}: entry is {type(raw).__name__}, not an object",
                                    endpoint="AssetPairs")
        field = _FieldReader(pair_id, raw)
        taker = field.fee_pct("fees")
        maker = field.fee_pct("fees_maker")
        return cls(
            id=pair_id,
            altname=field.text("altname"),
            wsname=field.text("wsname"),
            base=field.text("base"),
            quote=field.text("quote"),
            pair_decimals=field.integer("pair_decimals"),
            lot_decimals=field.integer("lot_decimals"),
            cost_decimals=field.integer("cost_decimals"),
            ordermin=field.number("ordermin"),
            costmin=field.optional_number("costmin"),
            tick_size=field.optional_number("tick_size"),
            leverage_buy=field.int_list("leverage_buy"),
            leverage_sell=field.int_list("leverage_sell"),
            fee_taker=taker,
            fee_maker=maker if maker is not None else taker,
            status=field.optional_text("status") or "online",
        )


class _FieldReader:
    """Typed access to one raw AssetPairs entry; every complaint names the pair and the field."""

    def __init__(self, pair_id: str, raw: Mapping[str, Any]) -> None:
        self._pair_id, self._raw = pair_id, raw

    def _bad(self, name: str, why: str) -> MalformedResponse:
        return MalformedResponse(f"pair {self._pair_id}: field {name!r} {why}", endpoint="AssetPairs")

    def _get(self, name: str, required: bool) -> Any:
        if name not in self._raw or self._raw[name] is None:
            if required:
                raise self._bad(name, "is missing")
            return None
        return self._raw[name]

    def text(self, name: str) -> str:
        value = self.optional_text(name, required=True)
        assert value is not None   # _get raised for a missing required field
        return value

    def optional_text(self, name: str, required: bool = False) -> str | None:
        value = self._get(name, required)
        if value is not None and (not isinstance(value, str) or not value):
            raise self._bad(name, f"must be a non-empty string, got {value!r}")
        return value

    def integer(self, name: str) -> int:
        value = self._get(name, True)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self._bad(name, f"must be a non-negative integer, got {value!r}")
        return value

    def number(self, name: str) -> Decimal:
        value = self.optional_number(name, required=True)
        assert value is not None   # _get raised for a missing required field
        return value

    def optional_number(self, name: str, required: bool = False) -> Decimal | None:
        value = self._get(name, required)
        if value is None:
            return None
        try:
            result = to_decimal(value, name)
        except ValidationError:
            raise self._bad(name, f"must be a decimal number, got {value!r}") from None
        if result < 0:
            raise self._bad(name, f"must not be negative, got {value!r}")
        return result

    def int_list(self, name: str) -> tuple[int, ...]:
        value = self._get(name, False)
        if value is None:
            return ()
        if not isinstance(value, list) or any(isinstance(v, bool) or not isinstance(v, int) for v in value):
            raise self._bad(name, f"must be a list of integers, got {value!r}")
        return tuple(value)

    def fee_pct(self, name: str) -> Decimal | None:
        """First tier of `[[volume, pct], ...]`: the fee for an account with no volume discount.

        Kraken sends these as JSON numbers. The client parses them as Decimal; a
        payload parsed elsewhere may hold floats, taken through their shortest repr
        (0.26 -> "0.26"), which is the number Kraken wrote.
        """
        value = self._get(name, False)
        if value is None or value == []:
            return None
        if not isinstance(value, list) or not isinstance(value[0], list) or len(value[0]) != 2:
            raise self._bad(name, f"must be [[volume, pct], ...], got {value!r}")
        pct = value[0][1]
        try:
            return to_decimal(repr(pct) if isinstance(pct, float) else pct, name)
        except ValidationError:
            raise self._bad(name, f"has a non-numeric fee {pct!r}") from None


def bot_symbol(wsname: str) -> str:
    """`XBT/USD` -> `BTC/USD`; `XDG/EUR` -> `DOGE/EUR`; other codes unchanged."""
    return "/".join(_BOT_NAME.get(part, part) for part in wsname.upper().split("/"))


def _kraken_symbol(symbol: str) -> str:
    """`BTC/USD` -> `XBT/USD`: the wsname spelling of a bot symbol."""
    return "/".join(_KRAKEN_NAME.get(part, part) for part in symbol.upper().split("/"))


@attrs.frozen
class _Index:
    """An immutable snapshot: refresh swaps the whole thing, so readers never see half an index."""

    pairs: tuple[PairInfo, ...]
    layers: tuple[Mapping[str, PairInfo | None], ...]  # None marks a name two pairs claim


def _build_index(pairs: Iterable[PairInfo]) -> _Index:
    pairs = tuple(pairs)
    namers: tuple[Callable[[PairInfo], str], ...] = (
        lambda p: p.id, lambda p: p.altname, lambda p: p.wsname, lambda p: p.symbol,
    )
    layers = []
    for name_of in namers:
        layer: dict[str, PairInfo | None] = {}
        for pair in pairs:
            key = name_of(pair).upper()
            layer[key] = pair if layer.get(key, pair) is pair else None
        layers.append(layer)
    return _Index(pairs=pairs, layers=tuple(layers))


def parse_asset_pairs(result: Any) -> list[PairInfo]:
    """Parse a whole AssetPairs `result` object."""
    if not isinstance(result, Mapping) or not result:
        raise MalformedResponse("AssetPairs result must be a non-empty object", endpoint="AssetPairs")
    return [PairInfo.from_asset_pairs(str(pair_id), raw) for pair_id, raw in result.items()]


class PairRegistry:
    """All tradable pairs, loaded once (lazily, on first use) and refreshable; safe across threads.

    `loader` returns the AssetPairs `result` object (the client passes its own public
    call). Names resolve in a fixed order: id, altname, wsname, then the bot's symbol;
    a name that two pairs claim in one layer is refused rather than guessed.
    """

    def __init__(self, loader: Callable[[], Any]) -> None:
        self._loader = loader
        self._index: _Index | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_result(cls, result: Any) -> PairRegistry:
        """A registry built from an AssetPairs result already in hand (tests, the paper exchange)."""
        registry = cls(lambda: result)
        registry.refresh()
        return registry

    def refresh(self) -> None:
        """Reload AssetPairs (e.g. a new listing, or a pair's status changed)."""
        index = _build_index(parse_asset_pairs(self._loader()))
        with self._lock:
            self._index = index

    def _current(self) -> _Index:
        index = self._index
        if index is not None:
            return index
        with self._lock:
            if self._index is None:
                self._index = _build_index(parse_asset_pairs(self._loader()))
            return self._index

    def all(self) -> tuple[PairInfo, ...]:
        return self._current().pairs

    def resolve(self, symbol: str | PairInfo) -> PairInfo:
        """Any of Kraken's names or the bot's `BTC/USD` -> PairInfo; UnknownSymbolError otherwise."""
        if isinstance(symbol, PairInfo):
            return symbol
        if not isinstance(symbol, str) or not symbol.strip():
            raise UnknownSymbolError(f"symbol: expected a pair name, got {symbol!r}")
        key = symbol.strip().upper()
        candidates = (key, _kraken_symbol(key), bot_symbol(key)) if "/" in key else (key,)
        for layer in self._current().layers:
            for candidate in candidates:
                if candidate in layer:
                    found = layer[candidate]
                    if found is None:
                        raise UnknownSymbolError(f"symbol: {symbol!r} names more than one Kraken pair")
                    return found
        raise UnknownSymbolError(f"symbol: {symbol!r} is not a Kraken pair")

    def symbol_of(self, pair: str | PairInfo) -> str:
        """Back to the bot's name: `XXBTZUSD` / `XBTUSD` -> `BTC/USD`."""
        return self.resolve(pair).symbol

    def round_volume(self, pair: str | PairInfo, volume: Decimal) -> Decimal:
        """Down to lot_decimals: never order more than was sized."""
        info = self.resolve(pair)
        return round_to_decimals(to_decimal(volume, "volume"), info.lot_decimals, up=False)

    def round_price(self, pair: str | PairInfo, price: Decimal, up: bool) -> Decimal:
        """To a multiple of tick_size (pair_decimals when absent); the caller picks the safe side."""
        info = self.resolve(pair)
        rounded = round_to_step(to_decimal(price, "price"), info.price_step, up)
        return round_to_decimals(rounded, info.pair_decimals, up)

    def check_minimums(self, pair: str | PairInfo, volume: Decimal, price: Decimal) -> None:
        """Refuse an order below ordermin (base) or costmin (quote) before anything is sent."""
        info = self.resolve(pair)
        volume, price = to_decimal(volume, "volume"), to_decimal(price, "price")
        if volume < info.ordermin:
            raise VolumeBelowMinimum(
                f"volume: {volume} is below {info.altname}'s minimum order of {info.ordermin} {info.base}")
        if info.costmin is not None and volume * price < info.costmin:
            raise CostBelowMinimum(
                f"volume: {volume} at {price} costs {volume * price}, below {info.altname}'s "
                f"minimum cost of {info.costmin} {info.quote}")

    def max_leverage(self, pair: str | PairInfo, side: OrderSide | str) -> int:
        """Highest leverage Kraken offers for this side; 1 when the pair has no margin."""
        info = self.resolve(pair)
        levels = info.leverage_buy if OrderSide(str(getattr(side, "value", side)).lower()) is OrderSide.BUY \
            else info.leverage_sell
        return max(levels, default=1)
