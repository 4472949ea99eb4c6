"""Fixtures for the crash suite: a paper exchange that outlives the bot process it serves.

The exchange runs in THIS (the test) process on a loopback port; the core runs in
a subprocess (`scripted_trade.py`) configured for `exchange.mode: live`, which is
killed with `os._exit` and replaced by a fresh process on the same SQLite store.
Hooks let the exchange act between two requests (a tick right after a given call),
so a multi-step scenario needs no sleeps and no handshake with the subprocess.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from triplegain_fsm.paper import PAPER_API_KEY, PAPER_API_SECRET, Call, PaperExchange
from triplegain_fsm.paper.server import PaperServer

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("scripted_trade.py")
SUBPROCESS_TIMEOUT = 60  # a safety net against a hung child, never a synchronisation


@attrs.define
class Hook:
    matches: Callable[[Call], bool]
    action: Callable[[], Any]


class HookedApi:
    """The exchange's REST front door, plus one-shot actions that run right after a matching call."""

    def __init__(self, paper: PaperExchange) -> None:
        self.paper = paper
        self.hooks: list[Hook] = []

    def after(self, matches: Callable[[Call], bool], action: Callable[[], Any]) -> None:
        self.hooks.append(Hook(matches, action))

    def handle(self, http_method: str, path: str, headers: Any, body: bytes | None) -> Any:
        reply = self.paper.api.handle(http_method, path, headers, body)
        call = self.paper.calls.last()  # the core's client calls one at a time: this is ours
        for hook in list(self.hooks):
            if call is not None and hook.matches(call):
                self.hooks.remove(hook)
                hook.action()
        return reply


@attrs.define
class Run:
    returncode: int
    stdout: str
    stderr: str

    def phases(self) -> dict[str, dict[str, Any]]:
        """The JSON snapshots a recovery printed, by phase (restored, early, final)."""
        found = {}
        for line in self.stdout.splitlines():
            if line.startswith("{"):
                data = json.loads(line)
                found[data["phase"]] = data
        return found

    def describe(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr[-4000:]}"


@attrs.define
class Venue:
    """One paper exchange on a loopback port and one store file, shared by successive bot processes."""

    paper: PaperExchange
    api: HookedApi
    server: PaperServer
    store_path: Path

    @property
    def url(self) -> str:
        return self.server.url

    def run(self, mode: str, *args: str) -> Run:
        env = dict(os.environ)
        env.update(KRAKEN_API_KEY=PAPER_API_KEY, KRAKEN_API_SECRET=PAPER_API_SECRET,
                   PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
        command = [sys.executable, str(SCRIPT), "--url", self.url, "--store", str(self.store_path),
                   "--mode", mode, *args]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                              timeout=SUBPROCESS_TIMEOUT, check=False)
        return Run(done.returncode, done.stdout, done.stderr)

    def trade(self, scenario: str, kill_at: str) -> Run:
        return self.run("trade", "--scenario", scenario, "--kill-at", kill_at)

    def recover(self, *args: str) -> Run:
        return self.run("recover", *args)


@pytest.fixture(scope="session")
def open_venue() -> Iterator[Callable[..., Venue]]:
    """open_venue(directory, **paper_kwargs) -> a margin paper exchange (BTC/USD at 43000) served on
    loopback, with its bot's store in `directory`. Every server is shut down at the end of the session."""
    servers: list[PaperServer] = []

    def start(directory: Path, **paper_kwargs: Any) -> Venue:
        kwargs: dict[str, Any] = {"balances": {"ZUSD": "1000000"}, "prices": {"BTC/USD": "43000"},
                                  "account": "margin", "seed": 7, **paper_kwargs}
        paper = PaperExchange(**kwargs)
        api = HookedApi(paper)
        server = PaperServer(api, "127.0.0.1", 0).start()  # type: ignore[arg-type]  # duck-typed front door
        servers.append(server)
        return Venue(paper, api, server, directory / "bot.sqlite")

    yield start
    for server in servers:
        server.shutdown()


@pytest.fixture
def venue(open_venue: Callable[..., Venue], tmp_path: Path) -> Callable[..., Venue]:
    """venue(**paper_kwargs) -> a Venue whose store lives in this test's tmp_path."""
    return lambda **paper_kwargs: open_venue(tmp_path, **paper_kwargs)
