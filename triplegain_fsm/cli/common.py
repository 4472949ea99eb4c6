"""What every command shares: exit codes, the one-line errors, config and store look-ups, the parser class."""
from __future__ import annotations

import argparse
import ipaddress
import sqlite3
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from triplegain_fsm.config import Config
from triplegain_fsm.views.readonly import NotAStore, open_store

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """The command line names something that is not there or cannot be used (exit 2)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2) instead of the usage block and a line."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see --help)\n")


def err(message: str) -> None:
    print(f"triplegain-fsm: {message}", file=sys.stderr)


def json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


# --------------------------------------------------------------------------- config and stores


def load_config(path: str | None) -> Config:
    if path is None:
        return Config.default()
    if not Path(path).is_file():
        raise UsageError(f"{path}: no such config file")
    return Config.load(path)


def with_store(config: Config, store: Path | str) -> Config:
    import attrs

    return attrs.evolve(config, storage=attrs.evolve(config.storage, path=str(store)))


def store_path(args: argparse.Namespace) -> Path:
    """--store, else the config's storage.path (the default config's when no --config)."""
    if getattr(args, "store", None):
        path = Path(args.store)
    else:
        path = Path(load_config(args.config).storage.path)
    if not path.is_file():
        raise UsageError(f"{path}: no such store (SQLite file); pass --store or a --config naming it")
    return path


def read_only(path: Path) -> sqlite3.Connection:
    """Open a store without any chance of changing it, nor leaving -wal/-shm files (views.readonly)."""
    try:
        return open_store(path)
    except NotAStore as exc:
        raise UsageError(str(exc)) from None


def require_directory(path: Path, what: str) -> None:
    """A file is only ever created in a directory that exists: a typo in a path must not make one."""
    parent = path.absolute().parent
    if not parent.is_dir():
        raise UsageError(f"{path}: the directory {parent} does not exist ({what}); create it first")


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def refuse_paper_with_loopback_url(config: Config, where: str) -> None:
    """`mode: paper` trades on the in-process exchange; a loopback base_url would silently be ignored.

    Said and refused instead: a served exchange (`triplegain-fsm exchange serve`) is reached the way
    Kraken is, in live mode with the key the server prints.
    """
    exchange = config.exchange
    if exchange.mode == "paper" and is_loopback_url(exchange.base_url):
        raise UsageError(
            f"{where}: exchange.base_url {exchange.base_url} is a loopback server, but exchange.mode: paper "
            "trades on its own in-process paper exchange and would never call it. To trade with a served "
            "exchange (triplegain-fsm exchange serve), set exchange.mode: live and KRAKEN_API_KEY/"
            "KRAKEN_API_SECRET to the key it prints; to trade in process, remove exchange.base_url")
