"""Issue 11 #7: the nonce floor survives a restart, so a clock that stepped back cannot poison the key."""
from __future__ import annotations

import time

import pytest

from triplegain_fsm import ExecutionCore
from triplegain_fsm.kraken import client as client_module
from triplegain_fsm.kraken.client import KrakenClient
from triplegain_fsm.kraken.errors import KrakenError
from triplegain_fsm.kraken.signing import NONCE_LEASE, NonceSource
from triplegain_fsm.store import Store

pytestmark = pytest.mark.integration


def new_process(monkeypatch, clock_ns) -> None:
    """What a new process has: no key lanes yet, and (here) a wall clock an hour behind."""
    monkeypatch.setattr(client_module._KeyLane, "_lanes", {})
    monkeypatch.setattr(client_module, "NonceSource", lambda: NonceSource(clock=clock_ns))


def restart(core: ExecutionCore) -> ExecutionCore:
    paper = core.paper
    client = KrakenClient(paper.api_key, paper.api_secret, core.config.exchange.base_url, sleep=lambda s: None)
    paper.mount(client.session, core.config.exchange.base_url)
    return ExecutionCore(core.config, client, Store(core.config.storage.path), paper=paper, clock=core.clock)


def test_a_restart_with_the_clock_an_hour_back_still_sends_accepted_nonces(make_core, monkeypatch):
    core = make_core()
    core.client.balances()                       # the exchange has now seen a nonce of this key
    rows = core.store._select("SELECT key, value FROM meta WHERE key LIKE 'nonce_floor:%'")
    assert len(rows) == 1 and int(rows[0]["value"]) > time.time_ns() // 1000, "the floor runs ahead"
    assert core.paper.api_key not in rows[0]["key"]
    hour_ago = time.time_ns() - 3600 * 10**9
    new_process(monkeypatch, lambda: hour_ago)
    again = restart(core)
    assert again.client.balances() is not None   # accepted: no EAPI:Invalid nonce


def test_without_the_persisted_floor_the_same_restart_is_refused(make_core, monkeypatch):
    """The control: what the floor prevents (Kraken, and the paper exchange, refuse a lower nonce)."""
    core = make_core()
    core.client.balances()
    hour_ago = time.time_ns() - 3600 * 10**9
    new_process(monkeypatch, lambda: hour_ago)
    paper = core.paper
    bare = KrakenClient(paper.api_key, paper.api_secret, core.config.exchange.base_url, sleep=lambda s: None,
                        max_attempts=1)
    paper.mount(bare.session, core.config.exchange.base_url)
    with pytest.raises(KrakenError, match="nonce"):
        bare.balances()


def test_the_floor_is_written_about_once_a_lease(tmp_path):
    writes: list[int] = []
    now = [10**15]
    source = NonceSource(clock=lambda: now[0])
    source.persist(0, writes.append)
    first = source.next()
    for _ in range(1000):
        now[0] += 1000   # 1 ms per call
        source.next()
    assert writes == [first + NONCE_LEASE]
    now[0] += NONCE_LEASE * 1000
    last = source.next()
    assert writes == [first + NONCE_LEASE, last + NONCE_LEASE]
