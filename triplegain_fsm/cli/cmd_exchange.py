"""`triplegain-fsm exchange serve`: the paper exchange on loopback -- Kraken REST, WebSocket v2, an admin
door to set a price, and optionally a price file replayed into it."""
from __future__ import annotations

import argparse
import base64
import binascii
import os
import sys
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from triplegain_fsm.cli.args import _decimal, _port, _speed
from triplegain_fsm.cli.cmd_paper import csv_ticks
from triplegain_fsm.cli.common import EXIT_OK, Parser, UsageError, is_loopback_url, load_config
from triplegain_fsm.config import Config

DEFAULT_PORT = 8765


def cmd_exchange_serve(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    from triplegain_fsm.paper import paper_from_config, server

    ticks = csv_ticks(args.prices, args.scale) if args.prices else None
    keys = credentials(os.environ)
    exchange = paper_from_config(config, **keys)
    try:
        replay = _replay(args, exchange, ticks)
        port = args.port if args.port is not None else default_port(config)

        def ready(url: str, ws_url: str) -> None:
            _say_where(url, ws_url, exchange, own=bool(keys))
            _say_what(args, exchange, replay)
            if replay is not None:
                replay.start()

        try:
            server.serve_forever_with_ws(exchange, port, ready=ready, on_request=_log_request if args.verbose else None)
        except KeyboardInterrupt:
            print("paper exchange stopped", file=sys.stderr)
        finally:
            if replay is not None:
                replay.stop()
    finally:
        exchange.close()          # writes the last prices of a kept paper account
    return EXIT_OK


def _replay(args: argparse.Namespace, exchange: Any, ticks: list[Any] | None) -> Any:
    from triplegain_fsm.paper.errors import KrakenRejection
    from triplegain_fsm.paper.replay import Replay

    if not ticks:
        return None
    try:
        return Replay(exchange, args.symbol, ticks, speed=args.speed, on_done=_replay_done)
    except KrakenRejection:
        raise UsageError(f"--symbol {args.symbol}: not a pair of the paper exchange") from None


def credentials(environ: Mapping[str, str]) -> dict[str, str]:
    """The key pair the served exchange accepts: KRAKEN_API_KEY/KRAKEN_API_SECRET when both are set
    (as PaperExchange arguments), else {} for the paper pair."""
    key, secret = environ.get("KRAKEN_API_KEY"), environ.get("KRAKEN_API_SECRET")
    if not key and not secret:
        return {}
    if not key or not secret:
        raise UsageError("set both KRAKEN_API_KEY and KRAKEN_API_SECRET for the served exchange to accept "
                         "your key pair, or neither for the paper key")
    try:
        base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError):
        raise UsageError("KRAKEN_API_SECRET: not base64 (a Kraken secret is); the value is not shown") from None
    return {"api_key": key, "api_secret": secret}


def default_port(config: Config) -> int:
    """The port of a loopback exchange.base_url (so the bot's config and the server agree), else 8765."""
    url = config.exchange.base_url
    if is_loopback_url(url):
        port = urlsplit(url).port
        if port:
            return port
    return DEFAULT_PORT


def _say_where(url: str, ws_url: str, exchange: Any, own: bool) -> None:
    """Where to connect and with which key; the secret is printed only when it is the paper one (public)."""
    out = sys.stderr
    key = "your KRAKEN_API_KEY" if own else repr(exchange.api_key)
    print(f"paper exchange listening on {url} (Kraken REST paths; API key {key}) and WebSocket v2 on {ws_url} "
          "(token from REST GetWebSocketsToken). Ctrl-C stops it.", file=out)
    if own:
        print("  API key and secret: the pair in KRAKEN_API_KEY / KRAKEN_API_SECRET (not shown)", file=out)
    else:
        print(f"  API key:    {exchange.api_key}", file=out)
        print(f"  API secret: {exchange.api_secret}", file=out)
        print("              (the paper pair, triplegain_fsm.paper.PAPER_API_KEY/PAPER_API_SECRET; set KRAKEN_API_KEY "
              "and KRAKEN_API_SECRET before starting to use your own)", file=out)
    print(f"  a core reaches it with exchange.mode: live, exchange.base_url: {url} and the key pair in "
          "KRAKEN_API_KEY/KRAKEN_API_SECRET", file=out)
    print(f"""  set a price: curl -d '{{"pair":"BTC/USD","price":"42000"}}' {url}/admin/price""", file=out)


def _say_what(args: argparse.Namespace, exchange: Any, replay: Any) -> None:
    """Where the paper account lives and what moves the market."""
    state = exchange.state_file.path if exchange.state_file is not None else None
    print(f"  paper account: {state} (kept across restarts)" if state else
          "  paper account: not kept (paper.state_path is ':memory:'); a fresh one every start", file=sys.stderr)
    if replay is not None:
        scale = f" x{args.scale}" if args.scale != 1 else ""
        print(f"  prices: replaying {len(replay.ticks):,} ticks of {args.symbol} from {args.prices}{scale} at "
              f"{args.speed:g}x their pace", file=sys.stderr)
    sys.stderr.flush()


def _replay_done(played: int, error: str | None) -> None:
    if error:
        print(f"  prices: replay stopped after {played:,} ticks: {error}", file=sys.stderr, flush=True)
    else:
        print(f"  prices: replay finished ({played:,} ticks); the price stays at the last one", file=sys.stderr,
              flush=True)


def _log_request(record: Any) -> None:
    print(f"{time.strftime('%H:%M:%S')} {record.line()}", file=sys.stderr, flush=True)


def register(sub: Any) -> None:
    exchange = sub.add_parser("exchange", help="the paper exchange as a server")
    exchange_sub = exchange.add_subparsers(dest="exchange_command", required=True, metavar="COMMAND",
                                           parser_class=Parser)
    serve = exchange_sub.add_parser(
        "serve", help="serve the paper exchange's Kraken REST API and WebSocket v2 on 127.0.0.1",
        description="The paper exchange on loopback: Kraken's REST paths (public Time, SystemStatus, AssetPairs, "
        "Assets, Ticker, Depth, OHLC, Trades; the private trading and account calls), the authenticated "
        "WebSocket v2, and POST /admin/price to set a price. It accepts the paper key pair (printed), or the "
        "pair in KRAKEN_API_KEY/KRAKEN_API_SECRET when both are set.")
    serve.add_argument("--port", type=_port, default=None,
                       help=f"TCP port on 127.0.0.1 (default: the port of a loopback exchange.base_url in --config, "
                       f"else {DEFAULT_PORT}; 0 picks a free one and prints it)")
    serve.add_argument("--config", help="YAML config (its paper: section sets balances, prices, liquidity; the "
                       "paper account is kept beside its storage.path)")
    serve.add_argument("--prices", help="CSV of trades to replay into the market (either layout `paper --prices` "
                       "takes, or the name of a shipped one)")
    serve.add_argument("--symbol", default="BTC/USD", help="pair the prices are for (default BTC/USD)")
    serve.add_argument("--scale", type=_decimal, default=Decimal(1), help="multiply the CSV prices by X")
    serve.add_argument("--speed", type=_speed, default=1.0, metavar="X",
                       help="replay X times faster than the file's own pace (default 1; 60: a minute a second)")
    serve.add_argument("--verbose", action="store_true", help="log every request on stderr (method, status, "
                       "Kraken errors, time)")
    serve.set_defaults(func=cmd_exchange_serve)
