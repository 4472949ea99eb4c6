"""What a paper session replays and does: the price series, and the schedule of actions on it.

Parsing only (CSV ticks, YAML and Python schedules, the actions' wording), no core
and no exchange: a bad series or schedule is refused here, before a session starts.
`triplegain_fsm.session` re-exports every name, its home since the start.
"""
from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from triplegain_fsm.config import load_yaml
from triplegain_fsm.enums import OrderSide, OrderType
from triplegain_fsm.errors import ValidationError
from triplegain_fsm.models import Position, TradeProposal
from triplegain_fsm.money import ZERO, positive, to_decimal
from triplegain_fsm.paper.feeds import Tick, seconds
from triplegain_fsm.views import fmt

HUNDRED = Decimal(100)
DEMO_SYMBOL = "BTC/USD"

class ScheduleError(ValidationError):
    """A schedule (YAML or Python) names an unknown action, ref or field; nothing ran."""


# --------------------------------------------------------------------------- ticks


def as_ticks(series: Iterable[Any]) -> list[Tick]:
    """Normalise a feed: paper.feeds Ticks, or (unix_time, price) pairs."""
    ticks = []
    for item in series:
        if isinstance(item, Tick):
            ticks.append(item)
        elif isinstance(item, tuple) and len(item) == 2:
            ticks.append(Tick(seconds(item[0]), positive(item[1], "price"), ZERO))
        else:
            raise ValidationError(f"ticks: expected a paper.feeds.Tick or (time, price), got {item!r}")
    return ticks


def load_price_csv(path: str | Path, scale: Any = 1) -> list[Tick]:
    """Ticks from a trade CSV of either shipped layout, prices multiplied by `scale`.

    Kraken's trade history (`unix_time,price,volume`) or a public-trades export
    (`timestamp_ms,trade_id,side,price,amount,cost`); the header says which.
    """
    factor = positive(scale, "scale")
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        fields = set(reader.fieldnames or ())
        if {"unix_time", "price"} <= fields:
            def when(row: dict[str, str]) -> float:
                return seconds(row["unix_time"])
            volume = "volume"
        elif {"timestamp_ms", "price"} <= fields:
            def when(row: dict[str, str]) -> float:
                return int(row["timestamp_ms"]) / 1000
            volume = "amount"
        else:
            raise ValidationError(f"{path}: unknown CSV layout (header {sorted(fields)}); expected "
                                  "unix_time,price,volume or timestamp_ms,trade_id,side,price,amount,cost")
        ticks = []
        for line, row in enumerate(reader, start=2):
            try:
                ticks.append(Tick(when(row), positive(row["price"], "price") * factor,
                                  Decimal(row.get(volume) or 0)))
            except (ValueError, ArithmeticError, TypeError) as exc:
                raise ValidationError(f"{path}: line {line}: {exc}") from None
    if not ticks:
        raise ValidationError(f"{path}: no price rows")
    return ticks


# --------------------------------------------------------------------------- actions


def _pct(value: Any, name: str) -> Decimal | None:
    if value is None:
        return None
    result = to_decimal(value, name)
    if not ZERO < result < HUNDRED:
        raise ScheduleError(f"{name}: must be between 0 and 100 (percent), got {result}")
    return result


def _level(price: Decimal, pct: Decimal, below: bool) -> Decimal:
    """`price` moved by `pct` percent, rounded to 6 significant digits (a readable level)."""
    factor = 1 - pct / HUNDRED if below else 1 + pct / HUNDRED
    return (price * factor).quantize(Decimal(1).scaleb(price.adjusted() - 5))


def _price(value: Any, name: str) -> Decimal | None:
    return None if value is None else positive(value, name)


@attrs.frozen
class Open:
    """An entry whose levels may be percentages of the price at its tick, so one schedule fits any series.

    Each level is absolute (`entry_price`, `stop_loss`, `take_profit`) or
    relative (`limit_offset_pct`, `stop_loss_pct`, `take_profit_pct`), not both.
    No entry price and no offset: a market order. `symbol` None: the session's.
    """

    ref: str
    size_usd: Decimal = attrs.field(converter=lambda v: positive(v, "size_usd"))
    side: str = "buy"
    stop_loss_pct: Decimal | None = attrs.field(default=None, converter=lambda v: _pct(v, "stop_loss_pct"))
    take_profit_pct: Decimal | None = attrs.field(default=None, converter=lambda v: _pct(v, "take_profit_pct"))
    limit_offset_pct: Decimal | None = attrs.field(default=None, converter=lambda v: _pct(v, "limit_offset_pct"))
    entry_price: Decimal | None = attrs.field(default=None, converter=lambda v: _price(v, "entry_price"))
    stop_loss: Decimal | None = attrs.field(default=None, converter=lambda v: _price(v, "stop_loss"))
    take_profit: Decimal | None = attrs.field(default=None, converter=lambda v: _price(v, "take_profit"))
    leverage: int = 1
    symbol: str | None = None

    def __attrs_post_init__(self) -> None:
        for absolute, relative in (("entry_price", "limit_offset_pct"), ("stop_loss", "stop_loss_pct"),
                                   ("take_profit", "take_profit_pct")):
            if getattr(self, absolute) is not None and getattr(self, relative) is not None:
                raise ScheduleError(f"open {self.ref}: give {absolute} or {relative}, not both")

    def proposal(self, symbol: str, price: Decimal) -> TradeProposal:
        long = self.side.lower() == OrderSide.BUY.value
        entry = self.entry_price
        if self.limit_offset_pct is not None:
            entry = _level(price, self.limit_offset_pct, below=long)
        reference = entry or price
        stop, target = self.stop_loss, self.take_profit
        if self.stop_loss_pct is not None:
            stop = _level(reference, self.stop_loss_pct, below=long)
        if self.take_profit_pct is not None:
            target = _level(reference, self.take_profit_pct, below=not long)
        return TradeProposal(symbol=self.symbol or symbol, side=self.side, size_usd=self.size_usd, entry_price=entry,
                             stop_loss=stop, take_profit=target, leverage=self.leverage, id=self.ref)


@attrs.frozen
class Close:
    ref: str
    reason: str = "manual"


@attrs.frozen
class Modify:
    """Move a position's levels: absolute prices, or percent from the price at the tick."""

    ref: str
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    stop_loss_pct: Decimal | None = attrs.field(default=None, converter=lambda v: _pct(v, "stop_loss_pct"))
    take_profit_pct: Decimal | None = attrs.field(default=None, converter=lambda v: _pct(v, "take_profit_pct"))

    def __attrs_post_init__(self) -> None:
        if self.stop_loss is None and self.take_profit is None and self.stop_loss_pct is None \
                and self.take_profit_pct is None:
            raise ScheduleError(f"modify {self.ref}: give stop_loss, take_profit or their _pct forms")

    def levels(self, position: Position, price: Decimal) -> tuple[Decimal | None, Decimal | None]:
        long = position.is_long
        sl = self.stop_loss if self.stop_loss_pct is None else _level(price, self.stop_loss_pct, below=long)
        tp = self.take_profit if self.take_profit_pct is None else _level(price, self.take_profit_pct,
                                                                          below=not long)
        return sl, tp


@attrs.frozen
class Trail:
    ref: str
    distance_pct: Decimal | None = None
    activation_pct: Decimal | None = None


Action = TradeProposal | Open | Close | Modify | Trail


def as_action(item: Any) -> Action:
    """Accept the action classes and the tuple shorthands ("close", ref), ("modify", ...), ("trail", ...)."""
    if isinstance(item, (TradeProposal, Open, Close, Modify, Trail)):
        return item
    if isinstance(item, tuple) and item and isinstance(item[0], str):
        verb, *rest = item
        if verb == "close" and len(rest) in (1, 2):
            return Close(*rest)
        if verb == "modify" and len(rest) == 3:
            return Modify(rest[0], stop_loss=rest[1], take_profit=rest[2])
        if verb == "trail" and len(rest) in (1, 2):
            return Trail(*rest)
    raise ScheduleError(f"not a schedule action: {item!r}")


def _ref_of(action: Action) -> str:
    return action.id if isinstance(action, TradeProposal) else action.ref


# --------------------------------------------------------------------------- YAML schedules


_OPEN_KEYS = {"side", "size_usd", "stop_loss_pct", "take_profit_pct", "limit_offset_pct", "leverage", "symbol",
              "entry_price", "stop_loss", "take_profit"}


def load_schedule(source: str | Path | Mapping[str, Any], total_ticks: int) -> list[tuple[int, Action]]:
    """A schedule from YAML (a path, or the parsed mapping). `at:` is a tick index or "N%" of the series.

        actions:
          - {at: 20, open: t1, side: buy, size_usd: 5000, stop_loss_pct: 2, take_profit_pct: 4}
          - {at: "50%", open: t2, size_usd: 500, stop_loss: 41000, take_profit: 48000}  # absolute levels
          - {at: 300, close: t1}
          - {at: 120, modify: t2, take_profit_pct: 1}
          - {at: 140, trail: t2, distance_pct: 1.0}
    """
    where = "schedule"
    if isinstance(source, Mapping):
        data: Any = source
    else:
        where = str(source)
        if not Path(source).is_file():
            raise ScheduleError(f"{source}: no such schedule file")
        data = load_yaml(source)
    if not isinstance(data, Mapping) or not isinstance(data.get("actions"), list):
        raise ScheduleError(f"{where}: expected a mapping with an 'actions' list")
    unknown = set(data) - {"actions", "description", "ticks"}
    if unknown:
        raise ScheduleError(f"{where}: unknown top-level key(s): {', '.join(sorted(map(str, unknown)))}")
    written_for = data.get("ticks")
    if written_for is not None and (isinstance(written_for, bool) or not isinstance(written_for, int)
                                    or written_for < 1):
        raise ScheduleError(f"{where}: ticks: expected the series length the indices were written for, "
                            f"got {written_for!r}")
    schedule = [_yaml_action(entry, index, total_ticks, written_for, where)
                for index, entry in enumerate(data["actions"])]
    check_refs(schedule)
    return schedule


def _yaml_action(entry: Any, index: int, total: int, written_for: int | None, where: str) -> tuple[int, Action]:
    here = f"{where}: actions[{index}]"
    if not isinstance(entry, Mapping) or "at" not in entry:
        raise ScheduleError(f"{here}: expected a mapping with 'at'")
    fields = {k: v for k, v in entry.items() if k != "at"}
    verbs = [v for v in ("open", "close", "modify", "trail") if v in fields]
    if len(verbs) != 1:
        raise ScheduleError(f"{here}: needs exactly one of open, close, modify, trail")
    verb = verbs[0]
    ref = str(fields.pop(verb))
    try:
        action = _build_action(verb, ref, fields)
    except (TypeError, ValidationError) as exc:
        raise ScheduleError(f"{here} ({verb} {ref}): {exc}") from None
    return _tick_index(entry["at"], total, written_for, here), action


def _build_action(verb: str, ref: str, fields: dict[str, Any]) -> Action:
    if verb == "open":
        unknown = set(fields) - _OPEN_KEYS
        if unknown:
            raise ScheduleError(f"unknown key(s) {', '.join(sorted(unknown))}")
        return Open(ref=ref, **fields)
    if verb == "close":
        return Close(ref, **fields)
    if verb == "modify":
        return Modify(ref, **fields)
    return Trail(ref, **fields)


def _tick_index(at: Any, total: int, written_for: int | None, here: str) -> int:
    """`at` as an index into this series: "N%" of it, or an index scaled from `written_for` ticks."""
    if isinstance(at, bool):
        raise ScheduleError(f"{here}: at: expected a tick index or 'N%', got {at!r}")
    if isinstance(at, int):
        if written_for is not None and not 0 <= at < written_for:
            raise ScheduleError(f"{here}: at: tick {at} is outside the {written_for} ticks the schedule is for")
        index = at if written_for is None else at * total // written_for
    elif isinstance(at, str) and at.strip().endswith("%"):
        try:
            share = Decimal(at.strip()[:-1])
        except ArithmeticError:
            raise ScheduleError(f"{here}: at: {at!r} is not a percentage") from None
        index = int(share * total / HUNDRED)
    else:
        raise ScheduleError(f"{here}: at: expected a tick index or 'N%', got {at!r}")
    if not 0 <= index < total:
        raise ScheduleError(f"{here}: at: tick {index} is outside the series (0..{total - 1})")
    return index


def check_refs(schedule: Sequence[tuple[int, Action]]) -> None:
    """Every close/modify/trail names an entry scheduled earlier; every entry ref is unique."""
    opened: dict[str, int] = {}
    for index, action in sorted(schedule, key=lambda item: item[0]):
        ref = _ref_of(action)
        if isinstance(action, (TradeProposal, Open)):
            if ref in opened:
                raise ScheduleError(f"ref {ref!r} is used by two entries")
            opened[ref] = index
        elif ref not in opened:
            raise ScheduleError(f"{type(action).__name__.lower()} at tick {index}: no entry {ref!r} before it")


def _describe(action: Action, symbol: str = DEMO_SYMBOL) -> str:
    """An action in words, prices at the pair's decimals and percentages signed by side (a short's stop is +)."""
    if isinstance(action, TradeProposal):
        def level(value: Decimal | None) -> str:
            return fmt.pair_price(value, action.symbol, grouping=False)
        levels = f"sl {level(action.stop_loss)} tp {level(action.take_profit)}"
        limit = action.effective_order_type is OrderType.LIMIT
        kind = f"limit {level(action.entry_price)}" if limit else "market"
        return f"open {action.id}: {action.side.value} ${fmt.amount(action.size_usd)} {action.symbol} {kind}, {levels}"
    if isinstance(action, Open):
        pair = action.symbol or symbol
        kind = "market" if action.entry_price is None and action.limit_offset_pct is None else "limit"
        stop = fmt.pair_price(action.stop_loss, pair, grouping=False) if action.stop_loss_pct is None \
            else fmt.level_pct(action.stop_loss_pct, side=action.side, stop=True)
        target = fmt.pair_price(action.take_profit, pair, grouping=False) if action.take_profit_pct is None \
            else fmt.level_pct(action.take_profit_pct, side=action.side, stop=False)
        return f"open {action.ref}: {action.side} ${fmt.amount(action.size_usd)} {kind}, sl {stop} tp {target}"
    if isinstance(action, Close):
        return f"close {action.ref} ({action.reason})"
    if isinstance(action, Modify):
        return f"modify {action.ref}"
    distance = "the configured distance" if action.distance_pct is None else f"{action.distance_pct}%"
    return f"trail {action.ref} at {distance}"
