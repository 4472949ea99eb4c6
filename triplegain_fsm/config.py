"""The execution core's settings: one frozen, validated object built once at start.

Why this shape:

- **Frozen.** Settings read by several threads must not change under them; a
  different setting means a new `Config` (``attrs.evolve``) and a restart.
- **Validated on construction, whatever the source.** ``Config.load`` (YAML),
  ``Config.from_dict`` and plain ``Config(...)`` all pass through the same
  coercion and checks, so a bad value fails at start with a message naming the
  full key path (``orders.poll_interval_seconds: must be > 0, got -1``) instead
  of misbehaving with real money hours later.
- **Unknown keys are errors.** A typo (``poll_intervall``) would otherwise be
  silently ignored and the default used.
- **Money, fees and percentages are Decimal, read from the YAML source text:**
  ``0.26`` becomes ``Decimal("0.26")``, never ``0.26000000000000000888``.
  Durations in seconds are floats: they never enter a money calculation.
- **No secrets.** The API key and secret come from the environment or an
  owner-only key file (see ``triplegain_fsm.credentials``); a config file gets
  copied, committed and pasted into tickets, so a secret-looking key in it is
  refused.

One generic walker (``_coerce``) turns raw values into typed ones from each
attrs field's type hint and checks the bounds in its metadata; each section adds
only the rules that relate two settings (``_cross_check``).
"""
from __future__ import annotations

import difflib
import functools
import os
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Literal, NoReturn, TypeVar, Union, get_args, get_origin, get_type_hints
from urllib.parse import urlsplit

import attrs
import yaml

from triplegain_fsm.errors import ConfigError

__all__ = [
    "AlertsConfig",
    "Config",
    "ExchangeConfig",
    "FrozenDict",
    "HeartbeatConfig",
    "LimitsConfig",
    "MetricsConfig",
    "NotificationsConfig",
    "OrdersConfig",
    "PaperConfig",
    "PositionsConfig",
    "SafetyConfig",
    "StorageConfig",
    "SymbolConfig",
    "load_yaml",
]

_K = TypeVar("_K")
_V = TypeVar("_V")

#: Key names that carry credentials. Matched case-insensitively, '-' read as '_'.
SECRET_KEY_NAMES = frozenset({"api_key", "api_secret", "secret", "key", "apikey", "apisecret",
                              "private_key", "secret_key", "password"})
_SECRETS_HINT = ("secrets do not belong in the config file (it gets copied, committed and logged): "
                 "set KRAKEN_API_KEY and KRAKEN_API_SECRET in the environment, or put them in an "
                 "owner-only file (chmod 600) and name that file in exchange.key_file")
_SYMBOL_RE = re.compile(r"^[A-Z0-9]+/[A-Z0-9]+$")      # Kraken wsname style: BTC/USD, 1INCH/EUR
_ASSET_RE = re.compile(r"^[A-Z0-9]+(\.[A-Z0-9]+)?$")   # Kraken asset codes: ZUSD, XXBT, ETH2.S
_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


class FrozenDict(dict[_K, _V]):
    """A dict that refuses mutation, so a frozen Config cannot be changed through its maps.

    A dict subclass (not MappingProxyType) so it still pickles, deep-copies, compares
    equal to a plain dict, serialises to JSON and passes ``isinstance(x, dict)``.
    """

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("config maps are read-only; build a new Config with attrs.evolve")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        # pickle's default for dict subclasses replays __setitem__, which we refuse.
        return (type(self), (dict(self),))

    def __repr__(self) -> str:
        return f"FrozenDict({dict.__repr__(self)})"


def _setting(default: Any, **rules: Any) -> Any:
    """An attrs field with its default and bounds (gt, ge, lt, le, keys=regex) as metadata.

    The bounds live beside the field so the rule, the default and the comment that
    explains them are read together; the generic walker enforces them.
    """
    return attrs.field(default=default, metadata={"rules": rules})


class _Section:
    """Shared validation: coerce every field by its type hint, check its bounds, then cross-check."""

    __slots__ = ()

    def __attrs_post_init__(self) -> None:
        cls: Any = type(self)  # an attrs class: every subclass is decorated
        hints = _type_hints(cls)
        for field in attrs.fields(cls):
            raw = getattr(self, field.name)
            value = _coerce(raw, hints[field.name], field.name)
            _check_rules(value, raw, field.metadata.get("rules", {}), field.name)
            if value is not raw:
                object.__setattr__(self, field.name, value)  # frozen: allowed once, during init
        self._cross_check()

    def _cross_check(self) -> None:
        """Rules relating two settings of one section; sections that have some override this."""


# --------------------------------------------------------------------------- the walker


@functools.cache
def _type_hints(cls: Any) -> dict[str, Any]:
    return get_type_hints(cls)


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and attrs.has(tp) and issubclass(tp, _Section)


def _build(cls: type[Any], data: Mapping[Any, Any], path: str) -> Any:
    """Build section `cls` from a mapping: unknown keys refused, errors prefixed with `path`."""
    names = [f.name for f in attrs.fields(cls)]
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"{_join(path, repr(key))}: keys must be strings")
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known keys: {', '.join(names)})"
            raise ConfigError(f"{_join(path, key)}: unknown key{hint}")
    try:
        return cls(**data)
    except ConfigError as exc:
        if not path:
            raise
        raise ConfigError(f"{path}.{exc}") from None


def _coerce(value: Any, tp: Any, path: str) -> Any:
    """Turn a raw value into the type `tp` says, or raise a ConfigError naming `path`."""
    origin = get_origin(tp)
    if origin in (Union, UnionType):
        if value is None and NoneType in get_args(tp):
            return None
        others = [arg for arg in get_args(tp) if arg is not NoneType]
        return _coerce(value, others[0], path)
    if origin is Literal:
        if isinstance(value, str) and value in get_args(tp):
            return value
        choices = ", ".join(repr(c) for c in get_args(tp))
        raise ConfigError(f"{path}: must be one of {choices}, got {_show(value)}")
    if origin in (dict, Mapping):
        return _coerce_map(value, get_args(tp)[1], path)
    if origin is tuple:  # tuple[X, ...]: a YAML list, kept immutable
        return _coerce_list(value, get_args(tp)[0], path)
    if _is_section(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return _build(tp, value, path)
        raise ConfigError(f"{path}: must be a mapping of settings, got {_show(value)}")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: must be true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: must be a whole number, got {_show(value)}")
    if tp is float:
        return float(_to_decimal(value, path))  # float-ok: durations in seconds, never money
    if tp is Decimal:
        return _to_decimal(value, path)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{path}: must be a string, got {_show(value)}")
    raise TypeError(f"config.py has no coercion for {tp!r} ({path})")  # a bug here, not in the file


def _coerce_map(value: Any, value_type: Any, path: str) -> FrozenDict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{path}: must be a mapping, got {_show(value)}")
    result: dict[str, Any] = {}
    for key, item in value.items():
        if not isinstance(key, str):
            raise ConfigError(f"{path}.{key!r}: keys must be strings")
        result[key] = _coerce(item, value_type, f"{path}.{key}")
    return FrozenDict(result)


def _coerce_list(value: Any, item_type: Any, path: str) -> tuple[Any, ...]:
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{path}: must be a list, got {_show(value)}")
    return tuple(_coerce(item, item_type, f"{path}[{index}]") for index, item in enumerate(value))


def _to_decimal(value: Any, path: str) -> Decimal:
    """Decimal from Decimal, int, numeric str, or float (via its shortest repr, i.e. the literal typed)."""
    if isinstance(value, bool):
        raise ConfigError(f"{path}: must be a number, got {_show(value)}")
    try:
        if isinstance(value, Decimal):
            result = value
        elif isinstance(value, (int, float)):
            result = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        elif isinstance(value, str):
            result = Decimal(value.strip().replace("_", ""))
        else:
            raise ConfigError(f"{path}: must be a number, got {_show(value)}")
    except InvalidOperation:
        raise ConfigError(f"{path}: must be a number, got {_show(value)}") from None
    if not result.is_finite():
        raise ConfigError(f"{path}: must be a finite number, got {_show(value)}")
    return result


def _check_rules(value: Any, raw: Any, rules: Mapping[str, Any], path: str) -> None:
    """Apply a field's bounds (to each value, for a map) and its key pattern."""
    if value is None or not rules:
        return
    if isinstance(value, Mapping):
        pattern = rules.get("keys")
        for key, item in value.items():
            if pattern is not None and not pattern.match(key):
                raise ConfigError(f"{path}.{key}: not a valid name here (expected like {_example(pattern)})")
            if not _is_section(type(item)):
                _check_bounds(item, raw[key], rules, f"{path}.{key}")
        return
    _check_bounds(value, raw, rules, path)


_OPS = (("gt", ">", lambda v, b: v > b), ("ge", ">=", lambda v, b: v >= b),
        ("lt", "<", lambda v, b: v < b), ("le", "<=", lambda v, b: v <= b))


def _check_bounds(value: Any, raw: Any, rules: Mapping[str, Any], path: str) -> None:
    for name, symbol, test in _OPS:
        if name in rules and not test(value, rules[name]):
            raise ConfigError(f"{path}: must be {symbol} {rules[name]}, got {_show(raw)}")


def _find_secret_key(data: Any, path: str) -> str | None:
    """Path of the first key anywhere in `data` whose name says it holds a credential."""
    if isinstance(data, Mapping):
        for key, item in data.items():
            here = _join(path, str(key))
            if isinstance(key, str) and key.strip().lower().replace("-", "_") in SECRET_KEY_NAMES:
                return here
            found = _find_secret_key(item, here)
            if found:
                return found
    elif isinstance(data, (list, tuple)):
        for index, item in enumerate(data):
            found = _find_secret_key(item, f"{path}[{index}]")
            if found:
                return found
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(value: Any) -> str:
    """A value as the user wrote it: Decimal('0.5') shows as 0.5, strings quoted."""
    if isinstance(value, (Decimal, int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, (str, bool)) or value is None:
        return repr(value)
    return f"a {type(value).__name__}"


def _example(pattern: re.Pattern[str]) -> str:
    return "'BTC/USD'" if pattern is _SYMBOL_RE else "'ZUSD' or 'XXBT'"


# --------------------------------------------------------------------------- sections


@attrs.frozen
class ExchangeConfig(_Section):
    """Where orders go and how the client talks to it."""

    # "paper" runs the in-process paper exchange (no key needed); "live" trades real money.
    mode: Literal["paper", "live"] = _setting("paper")
    # Kraken REST root; a loopback URL points the same code at a test server.
    base_url: str = _setting("https://api.kraken.com")
    # Kraken verification tier: sets the REST rate-limit counter (15 or 20 points, decay).
    tier: Literal["starter", "intermediate", "pro"] = _setting("starter")
    # Per-request HTTP timeout. A timed-out order submission is looked up, never resent.
    timeout_seconds: float = _setting(10.0, gt=0, le=120)
    # "spot" cannot borrow: any symbol with max_leverage > 1 needs "margin".
    account: Literal["spot", "margin"] = _setting("spot")
    # Owner-only file with the API key and secret, used when the environment has none.
    key_file: str | None = _setting(None)
    # Kraken's AddOrder `deadline`: the engine drops an order not matched within this
    # many seconds of sending, which bounds how long a timed-out submission stays unknown.
    submit_deadline_seconds: int = _setting(5, ge=2, le=60)
    user_agent: str = _setting("triplegain-fsm/0.1")
    # How fills are learnt: "websocket" (pushed by Kraken's executions stream; REST polling
    # becomes a slow audit and the fallback) or "poll" (REST only, as before the stream).
    stream: Literal["websocket", "poll"] = _setting("websocket")
    # Kraken's authenticated WebSocket v2; a ws:// loopback URL points the stream at a fake.
    ws_url: str = _setting("wss://ws-auth.kraken.com/v2")
    # Where orders are placed while the stream is connected; REST otherwise, and always for a
    # margin order below the pair's maximum leverage (WS add_order only knows "the maximum").
    order_entry: Literal["websocket", "rest"] = _setting("websocket")
    # No message (heartbeats included) for this long: the stream is down, polling takes over.
    stream_stale_seconds: float = _setting(10.0, gt=0, le=120)
    # While the stream is healthy, REST still audits open orders this often.
    stream_audit_seconds: float = _setting(60.0, gt=0, le=3600)
    # Shortest wait before reconnecting a dropped stream (Kraken bans IPs that reconnect
    # more than ~150 times in 10 minutes); doubles with jitter up to 60 s.
    stream_reconnect_seconds: float = _setting(5.0, gt=0, le=60)

    def __attrs_post_init__(self) -> None:
        # A trailing slash would make every request path start with '//'.
        if isinstance(self.base_url, str):
            object.__setattr__(self, "base_url", self.base_url.rstrip("/"))
        super().__attrs_post_init__()

    def _cross_check(self) -> None:
        url = urlsplit(self.base_url)
        if "@" in url.netloc:  # checked first: the message must not echo a password
            raise ConfigError("base_url: must not contain a user name or password")
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ConfigError(f"base_url: must be an http(s) URL, got {self.base_url!r}")
        if url.query or url.fragment:
            raise ConfigError(f"base_url: must not carry a query or fragment, got {self.base_url!r}")
        if self.mode == "live" and url.scheme != "https" and url.hostname not in _LOOPBACK_HOSTS:
            raise ConfigError(f"base_url: live mode signs requests with the API key; use https, got {self.base_url!r}")
        if not self.user_agent.strip():
            raise ConfigError("user_agent: must not be empty")
        ws = urlsplit(self.ws_url)
        if "@" in ws.netloc or ws.scheme not in ("ws", "wss") or not ws.hostname:
            raise ConfigError(f"ws_url: must be a ws(s) URL without a user name, got {self.ws_url!r}")
        if self.mode == "live" and ws.scheme != "wss" and ws.hostname not in _LOOPBACK_HOSTS:
            raise ConfigError(f"ws_url: live mode sends the stream token; use wss, got {self.ws_url!r}")
        if self.key_file is not None and not self.key_file.strip():
            raise ConfigError("key_file: must be a path or null, got an empty string")


@attrs.frozen
class StorageConfig(_Section):
    """The SQLite file that holds every order, position, fill, event and alert."""

    # Relative paths are resolved against the config file's directory by Config.load.
    path: str = _setting("triplegain.sqlite")

    def _cross_check(self) -> None:
        if not self.path.strip():
            raise ConfigError("path: must not be empty")


@attrs.frozen
class SymbolConfig(_Section):
    """Per-pair settings; a pair not listed in `symbols` gets these defaults."""

    # Taker fee in percent (0.26 = 0.26 %), used to estimate fees before Kraken reports
    # them; the fee Kraken reports on each fill is what P&L books.
    fee_pct: Decimal = _setting(Decimal("0.26"), ge=0, le=2)
    # Maker fee in percent, for resting limit orders.
    maker_fee_pct: Decimal = _setting(Decimal("0.16"), ge=0, le=2)
    # Highest leverage a proposal may ask for on this pair; Kraken allows 2..5 on margin.
    max_leverage: int = _setting(1, ge=1, le=5)
    # False refuses new entries on the pair; existing positions are still managed.
    enabled: bool = _setting(True)

    def _cross_check(self) -> None:
        if self.maker_fee_pct > self.fee_pct:
            raise ConfigError(f"maker_fee_pct: must be <= fee_pct ({self.fee_pct}), got {self.maker_fee_pct}"
                              " (Kraken's maker fee is never above its taker fee: swapped?)")


@attrs.frozen
class LimitsConfig(_Section):
    """Exposure limits checked before any order is sent."""

    max_open_positions: int = _setting(5, ge=1, le=1000)
    max_positions_per_symbol: int = _setting(2, ge=1, le=1000)
    # Largest single order in USD; None = no cap beyond the balance.
    max_order_usd: Decimal | None = _setting(None, gt=0)

    def _cross_check(self) -> None:
        if self.max_positions_per_symbol > self.max_open_positions:
            raise ConfigError(f"max_positions_per_symbol: must be <= max_open_positions ({self.max_open_positions}),"
                              f" got {self.max_positions_per_symbol}")


@attrs.frozen
class OrdersConfig(_Section):
    """How open orders are followed."""

    poll_interval_seconds: float = _setting(5.0, gt=0, le=3600)
    poll_workers: int = _setting(4, ge=1, le=32)
    # txids per QueryOrders call; sources disagree on Kraken's cap (20 or 50), 20 is safe.
    query_batch_size: int = _setting(20, ge=1, le=20)
    # Finished orders kept in memory (all of them stay in SQLite).
    history_size: int = _setting(1000, ge=1, le=10_000_000)
    # A price older than this is not used to size a market order.
    price_max_age_seconds: float = _setting(10.0, gt=0, le=3600)


@attrs.frozen
class PositionsConfig(_Section):
    """How positions are protected on the exchange."""

    stop_loss_order_type: Literal["stop-loss", "stop-loss-limit"] = _setting("stop-loss")
    take_profit_order_type: Literal["take-profit", "take-profit-limit"] = _setting("take-profit")
    # For the *-limit types: limit price this far (percent) beyond the trigger.
    limit_slippage_pct: Decimal = _setting(Decimal("0.5"), gt=0, le=10)
    # Profit (percent of entry) at which a trailing stop starts to follow the price.
    trailing_activation_pct: Decimal = _setting(Decimal("1.0"), ge=0, le=100)
    # Distance (percent) the trailing stop keeps behind the best price.
    trailing_distance_pct: Decimal = _setting(Decimal("1.5"), gt=0, le=50)
    # Backoff for re-placing a protective order that failed (F04): base, then doubling up to max.
    protection_retry_base_seconds: float = _setting(2.0, gt=0, le=3600)
    protection_retry_max_seconds: float = _setting(60.0, gt=0, le=86400)
    # Close a position still unprotected after this long; None = alert only, a human decides.
    close_unprotected_after_seconds: float | None = _setting(None, gt=0)
    # A stop about to be placed whose trigger the market already crossed: close at market now
    # (alert stop_crossed), or place it anyway (Kraken may refuse it or trigger it at once).
    crossed_stop: Literal["close", "place"] = _setting("close")
    # Refuse a proposal without a stop-loss (ProposalError). False: accept it, alert no_stop_loss.
    require_stop_loss: bool = _setting(False)

    def _cross_check(self) -> None:
        if self.protection_retry_max_seconds < self.protection_retry_base_seconds:
            raise ConfigError(f"protection_retry_max_seconds: must be >= protection_retry_base_seconds"
                              f" ({self.protection_retry_base_seconds}), got {self.protection_retry_max_seconds}")


@attrs.frozen
class AlertsConfig(_Section):
    """What happens to risk alerts besides the bus."""

    # Alerts are also logged at this level or above.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = _setting("WARNING")
    # An alert still true after this long is raised again (0 = every time it is seen).
    repeat_after_seconds: float = _setting(300.0, ge=0, le=86400)
    # Store alerts in SQLite for the audit trail.
    persist: bool = _setting(True)


@attrs.frozen
class SafetyConfig(_Section):
    """Circuit breaker, dead man's switch and reconciliation."""

    # Consecutive exchange failures that open the circuit (new entries refused).
    circuit_failure_threshold: int = _setting(5, ge=1, le=1000)
    # While open, one probe call this often to see whether the exchange is back.
    circuit_probe_seconds: float = _setting(30.0, gt=0, le=3600)
    # Kraken CancelAllOrdersAfter timeout; 0 = off. When on, ALL orders (stops included)
    # are cancelled if the process stops refreshing it.
    dead_mans_switch_seconds: int = _setting(0, ge=0, le=86400)
    dead_mans_switch_refresh_seconds: float = _setting(20.0, gt=0, le=86400)
    reconcile_interval_seconds: float = _setting(60.0, gt=0, le=86400)

    def _cross_check(self) -> None:
        dms = self.dead_mans_switch_seconds
        if dms and dms < 10:
            raise ConfigError(f"dead_mans_switch_seconds: must be 0 (off) or between 10 and 86400, got {dms}")
        if dms and self.dead_mans_switch_refresh_seconds >= dms:
            raise ConfigError(f"dead_mans_switch_refresh_seconds: must be < dead_mans_switch_seconds ({dms}),"
                              f" got {self.dead_mans_switch_refresh_seconds}")


@attrs.frozen
class PaperConfig(_Section):
    """The in-process paper exchange used in paper mode."""

    # Starting balances by Kraken asset code.
    balances: Mapping[str, Decimal] = _setting(FrozenDict({"ZUSD": Decimal("100000")}), ge=0, keys=_ASSET_RE)
    # Starting prices until a price update arrives.
    prices: Mapping[str, Decimal] = _setting(
        FrozenDict({"BTC/USD": Decimal("43000"), "ETH/USD": Decimal("2300")}), gt=0, keys=_SYMBOL_RE)
    # Base volume that can fill per price tick; None = unlimited (every order fills whole).
    liquidity_per_tick: Decimal | None = _setting(None, gt=0)
    # Ticks between an order becoming marketable and its fill.
    fill_latency_ticks: int = _setting(0, ge=0, le=10_000)
    # The SQLite file that keeps the paper account (balances, orders, trades, positions) across
    # restarts, as Kraken keeps a live one. None = beside storage.path (`<store>.paper.sqlite`;
    # nothing kept for an in-memory store); ":memory:" = a fresh account every start; a relative
    # path is relative to the store's directory. balances/prices above only seed a new account.
    state_path: str | None = _setting(None)

    def _cross_check(self) -> None:
        if self.state_path is not None and not self.state_path.strip():
            raise ConfigError("state_path: must be a path, ':memory:' or null, got an empty string")

    def state_file(self, store_path: str) -> str | None:
        """Where the paper account lives for a core whose store is `store_path`; None = not kept."""
        if self.state_path == ":memory:" or (self.state_path is None and store_path == ":memory:"):
            return None
        if self.state_path is None:
            return str(Path(store_path).with_suffix(".paper.sqlite"))
        path = Path(os.path.expanduser(self.state_path))
        if not path.is_absolute():
            if store_path == ":memory:":
                raise ConfigError("paper.state_path: a relative path needs a file storage.path to be relative to")
            path = Path(store_path).parent / path
        if path.absolute() == Path(store_path).absolute():
            raise ConfigError(f"paper.state_path: must not be the store itself ({store_path})")
        return str(path)


# --------------------------------------------------------------------------- telemetry (issue 14)

_URL_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://.")
_ADDRESS_SCHEMES = frozenset({"http", "https", "json", "jsons", "xml", "xmls", "form", "forms"})


def mask_url(url: str | None) -> str:
    """A URL as logs and reprs may show it: the scheme (and, for plain web schemes, the host); never
    a token, a password or a path (a Telegram bot token is the "host" of a tgram:// URL)."""
    if url is None:
        return "None"
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname if scheme in _ADDRESS_SCHEMES else None
    try:
        port = f":{parts.port}" if host and parts.port else ""
    except ValueError:   # a ${VAR} placeholder where the port goes
        port = ""
    return f"{scheme}://{host}{port}/***" if host else f"{scheme}://***"


def _mask_urls(urls: Any) -> str:
    return repr(tuple(mask_url(u) for u in urls)) if isinstance(urls, tuple) else "'***'"


def _mask_one(url: Any) -> str:
    return repr(mask_url(url)) if isinstance(url, str) or url is None else "'***'"


@attrs.frozen
class MetricsConfig(_Section):
    """Prometheus metrics (prometheus_client). `core.metrics.registry` exists whatever this says."""

    # Port of the /metrics HTTP server, on 127.0.0.1 only; null = no server (a bot can still mount
    # core.metrics.registry in its own web app); 0 = any free port (read core.metrics.port).
    port: int | None = _setting(None, ge=0, le=65535)


@attrs.frozen
class NotificationsConfig(_Section):
    """Alerts sent out through apprise, from a durable outbox that never blocks trading."""

    # apprise URLs (tgram://, discord://, slack://, mailto://, ntfy://, json://, ...). ${NAME} is
    # replaced from the environment when the core is built, so secrets stay out of this file;
    # reprs and logs show only the scheme. Empty = no notifications (and no outbox rows).
    urls: tuple[str, ...] = attrs.field(default=(), metadata={"rules": {}}, repr=_mask_urls)
    # Alerts at or above this severity go to the outbox (critical > high > warning > info).
    min_severity: Literal["critical", "high", "warning", "info"] = _setting("high")
    # Connect and read timeout of one delivery attempt; a hung receiver holds only the delivery thread.
    timeout_seconds: float = _setting(10.0, gt=0, le=120)
    # A failed delivery is retried after base seconds, doubling up to max (per URL).
    retry_base_seconds: float = _setting(5.0, gt=0, le=3600)
    retry_max_seconds: float = _setting(300.0, gt=0, le=86400)

    def _cross_check(self) -> None:
        for index, url in enumerate(self.urls):
            if not _URL_SCHEME_RE.match(url.strip()):  # the URL itself is never echoed: it may hold a token
                raise ConfigError(f"urls[{index}]: must be an apprise URL like tgram://... or json://..., "
                                  "got a string without a scheme://")
        if self.retry_max_seconds < self.retry_base_seconds:
            raise ConfigError(f"retry_max_seconds: must be >= retry_base_seconds ({self.retry_base_seconds}),"
                              f" got {self.retry_max_seconds}")


@attrs.frozen
class HeartbeatConfig(_Section):
    """A ping to an external checker (healthchecks.io style), so a dead process is noticed from outside."""

    # GET this URL after a healthy poll cycle, and URL/fail when the circuit breaker opens or the core
    # stops on an error. ${NAME} is replaced from the environment; null = off.
    url: str | None = attrs.field(default=None, metadata={"rules": {}}, repr=_mask_one)
    # At most one ping per this many seconds (the checker's period should be a few of these).
    every_seconds: float = _setting(60.0, gt=0, le=86400)
    # Connect and read timeout of one ping; a slow checker holds only the heartbeat thread.
    timeout_seconds: float = _setting(10.0, gt=0, le=120)

    def _cross_check(self) -> None:
        if self.url is None:
            return
        parts = urlsplit(self.url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError("url: must be an http(s) URL or null")


_DEFAULT_SYMBOLS = FrozenDict({"BTC/USD": SymbolConfig(), "ETH/USD": SymbolConfig()})
_DEFAULT_SYMBOL = SymbolConfig()


@attrs.frozen
class Config(_Section):
    """Every setting of the execution core. ``Config()`` is a working paper-mode config."""

    exchange: ExchangeConfig = _setting(ExchangeConfig())
    storage: StorageConfig = _setting(StorageConfig())
    symbols: Mapping[str, SymbolConfig] = _setting(_DEFAULT_SYMBOLS, keys=_SYMBOL_RE)
    limits: LimitsConfig = _setting(LimitsConfig())
    orders: OrdersConfig = _setting(OrdersConfig())
    positions: PositionsConfig = _setting(PositionsConfig())
    alerts: AlertsConfig = _setting(AlertsConfig())
    safety: SafetyConfig = _setting(SafetyConfig())
    paper: PaperConfig = _setting(PaperConfig())
    metrics: MetricsConfig = _setting(MetricsConfig())
    notifications: NotificationsConfig = _setting(NotificationsConfig())
    heartbeat: HeartbeatConfig = _setting(HeartbeatConfig())

    def _cross_check(self) -> None:
        if self.exchange.account == "spot":
            for name, symbol in self.symbols.items():
                if symbol.max_leverage > 1:
                    raise ConfigError(f"symbols.{name}.max_leverage: {symbol.max_leverage} needs exchange.account:"
                                      " margin (a spot account cannot borrow)")

    @classmethod
    def default(cls) -> Config:
        """The built-in defaults: paper mode, BTC/USD and ETH/USD."""
        return cls()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Config:
        """Read a YAML file; relative paths in it are resolved against its directory."""
        data = load_yaml(path)
        return cls.from_dict(data, base_dir=Path(path).absolute().parent)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None, base_dir: str | os.PathLike[str] | None = None) -> Config:
        """Build from plain data (as YAML gives it). Missing keys take their defaults.

        `base_dir` resolves relative `storage.path` and `exchange.key_file`; without it
        they stay relative (to the working directory).
        """
        data: Any = {} if d is None else d
        if not isinstance(data, Mapping):
            raise ConfigError(f"config: the top level must be a mapping of sections, got {type(data).__name__}")
        secret_at = _find_secret_key(data, "")
        if secret_at:
            raise ConfigError(f"{secret_at}: {_SECRETS_HINT}")
        config = _build(cls, data, "")
        return config._resolve_paths(Path(base_dir)) if base_dir is not None else config

    def symbol(self, symbol: str) -> SymbolConfig:
        """Settings for `symbol`; a pair not listed gets the default SymbolConfig."""
        return self.symbols.get(symbol, _DEFAULT_SYMBOL)

    def _resolve_paths(self, base_dir: Path) -> Config:
        def resolve(p: str) -> str:
            if p == ":memory:":
                return p
            expanded = Path(os.path.expanduser(p))
            return str(expanded if expanded.is_absolute() else base_dir / expanded)

        key_file = self.exchange.key_file
        return attrs.evolve(
            self,
            storage=attrs.evolve(self.storage, path=resolve(self.storage.path)),
            exchange=attrs.evolve(self.exchange, key_file=None if key_file is None else resolve(key_file)),
        )


# --------------------------------------------------------------------------- YAML


class _ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` (builds plain data only, never objects) with two changes.

    Floats are built as Decimal from their source text, so ``0.26`` is exactly
    ``Decimal("0.26")``; and a key repeated in one mapping is an error, since
    PyYAML would silently keep the last one.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable key: SafeLoader reports it below
                continue
            if duplicate:
                raise _DuplicateKey(key, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep=deep)


def _construct_decimal(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> Any:
    text = str(loader.construct_scalar(node)).replace("_", "")
    try:
        return Decimal(text)
    except InvalidOperation:  # .inf, .nan, 1:30.5 (sexagesimal): let YAML decide, coercion refuses
        return loader.construct_yaml_float(node)


_ConfigLoader.add_constructor("tag:yaml.org,2002:float", _construct_decimal)


class _DuplicateKey(Exception):
    def __init__(self, key: Any, line: int) -> None:
        super().__init__(key, line)
        self.key, self.line = key, line


def load_yaml(path: str | os.PathLike[str]) -> Any:
    """Parse a config file with the safe loader; every failure is a ConfigError naming the file.

    Error messages give line and column but never quote the file's text, which
    could hold a secret someone put there by mistake.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config file is not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # a SafeLoader subclass: plain data only
    except _DuplicateKey as exc:
        raise ConfigError(f"{path}: line {exc.line}: duplicate key {exc.key!r}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{path}: invalid YAML: {where}{exc.problem}") from None
    except yaml.YAMLError:
        raise ConfigError(f"{path}: invalid YAML") from None
