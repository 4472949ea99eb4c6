"""The paper exchange: an in-process, Kraken-compatible fake for sessions without an API key.

    from decimal import Decimal
    import requests
    from triplegain_fsm.paper import PaperExchange

    exchange = PaperExchange(balances={"ZUSD": "100000"}, prices={"BTC/USD": "43000"})
    session = requests.Session()
    exchange.mount(session, "https://api.kraken.com")   # the core's client now trades on paper
    exchange.set_price("BTC/USD", "42500")              # a tick: stops and limits react

It answers Kraken's REST calls (signed with `exchange.api_key` / `PAPER_API_SECRET`)
through a mounted `requests` adapter or a loopback server (`paper.server.serve`),
and scripts the failures an execution core must survive (`exchange.faults`). It also
speaks Kraken's authenticated WebSocket v2 (`exchange.serve_ws()`: executions pushed,
orders placed on the socket; failures scripted by `exchange.ws_faults`).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import requests

from triplegain_fsm.paper.api import KrakenApi
from triplegain_fsm.paper.calllog import Call, CallLog
from triplegain_fsm.paper.clock import ManualClock
from triplegain_fsm.paper.endpoints import Context
from triplegain_fsm.paper.engine import Engine
from triplegain_fsm.paper.errors import KrakenRejection, LostResponse
from triplegain_fsm.paper.faults import Fault, Faults
from triplegain_fsm.paper.feeds import Tick
from triplegain_fsm.paper.pairs import PairSpec
from triplegain_fsm.paper.pairs import default_pairs as _default_pairs
from triplegain_fsm.paper.persist import StateFile
from triplegain_fsm.paper.ratelimit import RateLimiter
from triplegain_fsm.paper.transport import PaperAdapter, mount
from triplegain_fsm.paper.ws_connection import WsSettings
from triplegain_fsm.paper.ws_faults import WsFaults
from triplegain_fsm.paper.ws_server import WsServer
from triplegain_fsm.paper.ws_tokens import TokenBook

# A fixed, valid base64 secret: the paper exchange is not a vault, and a constant
# lets any client sign requests for it without configuration.
PAPER_API_SECRET = "cSdM3jtp9VFY53H193GhRXgw77rOZckaRbJ35rqUuqHl9d/kgSXqoMRmLuSyPIZG5GTtgzDsOMkygukVC97z1Q=="
PAPER_API_KEY = "paper-key"
KRAKEN_BASE_URL = "https://api.kraken.com"
DEFAULT_BALANCES = {"ZUSD": Decimal(100000), "XXBT": Decimal(0)}

__all__ = [
    "PAPER_API_KEY", "PAPER_API_SECRET", "Call", "CallLog", "Fault", "Faults", "KrakenRejection", "LostResponse",
    "ManualClock", "PaperAdapter", "PaperExchange", "Tick", "WsFaults", "WsServer", "default_pairs",
    "paper_from_config",
]


def default_pairs() -> dict[str, dict[str, Any]]:
    """AssetPairs entries for XXBTZUSD, XETHZUSD, XXRPXETH and BCHEUR, as Kraken returns them."""
    return _default_pairs()


def paper_from_config(config: Any, **overrides: Any) -> PaperExchange:
    """The paper exchange a triplegain `Config` describes: its `paper:` section and `exchange.account`."""
    paper = config.paper
    kwargs: dict[str, Any] = {
        "balances": dict(paper.balances), "prices": dict(paper.prices),
        "liquidity_per_tick": paper.liquidity_per_tick,
        "fill_latency_ticks": getattr(paper, "fill_latency_ticks", 0),
        "account": config.exchange.account,
    }
    state_file = getattr(paper, "state_file", None)
    if state_file is not None:
        kwargs["state_path"] = state_file(config.storage.path)   # None: in-memory store, nothing kept
    return PaperExchange(**{**kwargs, **overrides})


class PaperExchange:
    """One paper account on one paper market. Thread-safe; all amounts are Decimal.

    pairs: AssetPairs-shaped entries `{id: entry}` (or PairSpecs); default `default_pairs()`.
    balances: starting balances by asset id or name (`ZUSD`, `USD`, `BTC`); default 100000 ZUSD.
    prices: starting last prices by pair or symbol (`BTC/USD`).
    liquidity_per_tick: base volume resting orders can fill per pair per tick (one value or
      per pair); None = unlimited. limit_market_orders: apply it to taker fills too.
    rate_limit_tier: None (off), "starter", "intermediate" or "pro".
    account: "spot" refuses leveraged orders like an account without margin; "margin" allows them.
    fill_latency_ticks: ticks between an order becoming marketable and its fill (0 = at once).
    seed: makes txids and trade ids reproducible.
    state_path: a SQLite file that keeps the whole account across restarts (`paper.persist`): an
      existing file is loaded (then `balances` and `prices` are ignored: they only seed a new
      account), a missing one is created from them. None = nothing kept. `close()` when done.
    """

    def __init__(
        self,
        pairs: Mapping[str, Mapping[str, Any]] | Iterable[PairSpec] | None = None,
        balances: Mapping[str, Any] | None = None,
        prices: Mapping[str, Any] | None = None,
        *,
        api_key: str = PAPER_API_KEY,
        api_secret: str = PAPER_API_SECRET,
        clock: Callable[[], float] = time.time,
        liquidity_per_tick: Any = None,
        limit_market_orders: bool = False,
        rate_limit_tier: str | None = None,
        account: str = "spot",
        fill_latency_ticks: int = 0,
        seed: int | None = None,
        state_path: str | Path | None = None,
    ) -> None:
        self.engine = Engine(
            pairs, DEFAULT_BALANCES if balances is None else balances, clock=clock,
            liquidity_per_tick=liquidity_per_tick, limit_market_orders=limit_market_orders, account=account,
            fill_latency_ticks=fill_latency_ticks, seed=seed,
        )
        self.faults = Faults()
        self.calls = CallLog()
        self.ws_calls = CallLog()        # the WebSocket v2 trading requests (add_order, cancel_order, ...)
        self.ws_tokens = TokenBook(clock)
        self.ws_faults = WsFaults(self.ws_tokens)
        limiter = RateLimiter(rate_limit_tier, clock) if rate_limit_tier is not None else None
        self.api = KrakenApi(self.engine, api_key=api_key, api_secret=api_secret, faults=self.faults,
                             calls=self.calls, rate_limiter=limiter, tokens=self.ws_tokens)
        self.api_key = api_key
        self.api_secret = api_secret
        self.clock = clock
        self.state_file = StateFile(state_path) if state_path is not None else None
        if self.state_file is None or self.state_file.is_new:
            for pair, price in (prices or {}).items():
                self.engine.set_price(pair, price)
        if self.state_file is not None:
            self.engine.attach_journal(self.state_file)

    @property
    def account_id(self) -> str | None:
        """The paper account's id (a uuid made with it), None when its state is not kept."""
        return None if self.state_file is None else self.state_file.account_id

    def close(self) -> None:
        """Write what is only in memory (last prices, Ticker figures) and close the state file, if any."""
        self.engine.close_journal()

    @staticmethod
    def default_pairs() -> dict[str, dict[str, Any]]:
        return default_pairs()

    # -- market -------------------------------------------------------------------------------

    def set_price(self, symbol_or_pair: str, price: Any, *, volume: Any = None,
                  liquidity: Any = None) -> list[dict[str, Any]]:
        """A tick. Returns the trades it caused (Kraken trade shape plus `txid`)."""
        return self.engine.set_price(symbol_or_pair, price, volume=volume, liquidity=liquidity)

    def last_price(self, pair: str) -> Decimal | None:
        return self.engine.last_price(pair)

    def replay(self, pair: str, ticks: Iterable[Tick]) -> list[dict[str, Any]]:
        """Feed ticks in order; a ManualClock is moved to each tick's time first. Returns all trades."""
        trades: list[dict[str, Any]] = []
        for tick in ticks:
            if isinstance(self.clock, ManualClock):
                self.clock.set(tick.time)
            trades.extend(self.set_price(pair, tick.price, volume=tick.volume))
        return trades

    def process_time(self) -> None:
        """Apply expiries, delayed starts and the dead man's switch after moving a fake clock."""
        self.engine.process_time()

    def set_pair_status(self, pair: str, status: str) -> None:
        self.engine.set_pair_status(pair, status)

    def set_system_status(self, status: str) -> None:
        self.engine.set_system_status(status)

    # -- transports ---------------------------------------------------------------------------

    def mount(self, session: requests.Session, base_url: str = KRAKEN_BASE_URL) -> requests.Session:
        """Send everything `session` requests under `base_url` to this exchange, in process."""
        return mount(session, base_url, self.api.handle)

    def serve_ws(self, host: str = "127.0.0.1", port: int = 0, *, heartbeat_interval: float = 1.0,
                 completing_trade_status: str = "partially_filled") -> WsServer:
        """Kraken's private WebSocket v2 on loopback (`.url` is `ws://127.0.0.1:PORT/v2`), on a
        background thread, onto this same engine; tokens come from REST GetWebSocketsToken (or
        `ws_tokens.issue()`), faults from `ws_faults`. Call `.shutdown()` when done.

        completing_trade_status: what the trade report that completes an order says; Kraken has
        been seen to say "partially_filled" (the default, with a `filled` report after it).
        """
        settings = WsSettings(self.engine, Context(self.engine, self.api.rate_limiter, self.ws_tokens),
                              self.ws_tokens, self.ws_faults, heartbeat_interval, completing_trade_status,
                              calls=self.ws_calls)
        return WsServer(settings, host, port).start()

    def invalidate_ws_tokens(self) -> int:
        """Every WebSocket token stops working, as Kraken's sometimes do (see `ws_faults`)."""
        return self.ws_tokens.invalidate_all()

    def dispatch(
        self, http_method: str, path: str, headers: Mapping[str, str], body: bytes | None
    ) -> tuple[int, bytes]:
        """Kraken's REST call without any transport: (status, JSON bytes)."""
        return self.api.dispatch(http_method, path, headers, body)

    # -- inspection (Kraken shapes, as a client would read them) ------------------------------

    def trades(self) -> dict[str, dict[str, Any]]:
        """Every fill so far, oldest first, keyed by trade txid."""
        return self.engine.all_trades()

    def open_orders(self) -> dict[str, dict[str, Any]]:
        return self.engine.open_orders(trades=True)["open"]

    def order(self, txid: str) -> dict[str, Any]:
        return self.engine.order(txid)

    def balances(self) -> dict[str, Decimal]:
        """Total balance per asset id (holds included; see `holds()`)."""
        return self.engine.balances()

    def holds(self) -> dict[str, Decimal]:
        return self.engine.holds()

    def positions(self) -> dict[str, dict[str, Any]]:
        return self.engine.open_positions()
