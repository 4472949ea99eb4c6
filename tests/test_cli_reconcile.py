"""`triplegain-fsm reconcile` through the real console script: --dry-run changes nothing, --store, the refusal
of a paper store without its paper exchange, and --resolve for an order the exchange forgot.

Each test builds a store the way a bot does (a core from a paper config, a bought and protected
position), then changes the world behind the core's back as a person or Kraken would: a stop
cancelled by hand, an order the exchange no longer knows.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import subprocess
import sys
from decimal import Decimal as D
from pathlib import Path

import pytest

from triplegain_fsm import ExecutionCore, PositionStatus, TradeProposal, cli
from triplegain_fsm.paper import PaperExchange

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).with_name("triplegain-fsm")
CONFIG = ("exchange:\n  mode: paper\nstorage:\n  path: s.sqlite\n"
          "paper:\n  balances: {ZUSD: 100000}\n  prices: {BTC/USD: 43000}\n")


def run(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The real console script, in a subprocess, as a person runs it."""
    if not SCRIPT.exists():
        pytest.skip("the triplegain-fsm console script is not installed in this environment")
    return subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, timeout=60, cwd=cwd)


def main(capsys: pytest.CaptureFixture[str], *argv: str) -> subprocess.CompletedProcess[str]:
    """The same command in this process (cli.main): a second each saved where a test makes many calls."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(list(argv), code, out, err)


def report(done: subprocess.CompletedProcess[str]) -> dict:
    assert "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def digest(*paths: Path) -> dict[str, str]:
    """Every byte of these files and of any -wal/-shm beside them."""
    found = {}
    for path in paths:
        for file in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            if file.exists():
                found[file.name] = hashlib.sha256(file.read_bytes()).hexdigest()
    return found


@pytest.fixture
def protected(tmp_path: Path) -> tuple[Path, str, str]:
    """(config file, position id, its stop's txid): a bought BTC/USD position with its stop at the exchange."""
    config = tmp_path / "c.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    core = ExecutionCore.from_config(config)
    try:
        result = core.orders.execute_trade(TradeProposal(
            symbol="BTC/USD", side="buy", size_usd=D("500"), entry_price=None, stop_loss=D("41000"),
            take_profit=D("48000"), leverage=1))
        for _ in range(20):
            core.orders.poll_once()
            position = core.positions.get_position(result.position_id)
            if position.status is PositionStatus.PROTECTED:
                break
        assert position.status is PositionStatus.PROTECTED
        stop = core.orders.get_order(position.stop_loss_order_id)
        txid = stop.external_id
    finally:
        core.close()
    return config, position.id, txid


def open_stops(store: Path) -> list[dict]:
    conn = sqlite3.connect(f"{store.as_uri()}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT id, state, external_id FROM orders "
                                               "WHERE role = 'stop_loss' AND state = 'OPEN'")]
    finally:
        conn.close()


def test_dry_run_reports_what_reconcile_would_do_and_changes_no_byte(protected: tuple[Path, str, str]) -> None:
    config, position_id, txid = protected
    where = config.parent
    paper = PaperExchange(state_path=where / "s.paper.sqlite")   # a person cancels the stop on the website
    assert paper.engine.cancel_order(txid=txid) == 1
    paper.close()
    store, state = where / "s.sqlite", where / "s.paper.sqlite"
    before = digest(store, state)
    listing = sorted(p.name for p in where.iterdir())

    done = run("reconcile", "--config", str(config), "--dry-run", cwd=where)
    assert done.returncode == 0, done.stderr
    dry = report(done)
    assert dry["dry_run"] is True and dry["orders_updated"] == 1 and dry["errors"] == []
    assert [(c["method"], c["params"]["ordertype"], c["params"]["price"]) for c in dry["would_send"]] == \
        [("AddOrder", "stop-loss", "41000")]                       # it would re-protect the position
    assert "dry run: nothing was changed; 1 exchange call(s) not sent" in done.stderr
    assert "risk alert" not in done.stderr                         # the copies' alerts are not shown
    assert digest(store, state) == before                          # not one byte of either file changed
    assert sorted(p.name for p in where.iterdir()) == listing      # and nothing was left beside them
    assert [s["external_id"] for s in open_stops(store)] == [txid]  # the store still believes the old stop

    done = run("reconcile", "--config", str(config), cwd=where)    # the real one does what the dry run said
    assert done.returncode == 0, done.stderr
    assert report(done)["dry_run"] is False
    stops = open_stops(store)
    assert len(stops) == 1 and stops[0]["external_id"] != txid


def test_store_option_and_a_paper_store_without_its_paper_exchange_is_refused(
        protected: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    config, position_id, _ = protected
    where = config.parent
    elsewhere = where / "copy"
    elsewhere.mkdir()
    (elsewhere / "moved.sqlite").write_bytes((where / "s.sqlite").read_bytes())   # restored without its paper file

    done = main(capsys, "reconcile", "--config", str(config), "--store", str(elsewhere / "moved.sqlite"))
    assert done.returncode == 2
    assert "moved.paper.sqlite is missing" in done.stderr and "close every open position" in done.stderr
    assert sorted(p.name for p in elsewhere.iterdir()) == ["moved.sqlite"]     # no empty paper account made

    (elsewhere / "moved.paper.sqlite").write_bytes((where / "s.paper.sqlite").read_bytes())
    done = main(capsys, "reconcile", "--config", str(config), "--store", str(elsewhere / "moved.sqlite"), "--dry-run")
    assert done.returncode == 0, done.stderr
    assert report(done)["orders_checked"] == 1

    done = main(capsys, "reconcile", "--store", str(where / "nothing.sqlite"))
    assert done.returncode == 2 and "no such store" in done.stderr


def forget(state: Path, txid: str) -> None:
    """The exchange forgets an order: gone from its books, the coins it held released."""
    conn = sqlite3.connect(state)
    try:
        assert conn.execute("DELETE FROM orders WHERE txid = ?", (txid,)).rowcount == 1
        conn.execute("UPDATE balances SET hold = '0' WHERE asset = 'XXBT'")
        conn.commit()
    finally:
        conn.close()


def test_an_order_the_exchange_forgot_is_named_then_resolved_audited_and_reconcile_passes_again(
        protected: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]) -> None:
    config, position_id, txid = protected
    where = config.parent
    forget(where / "s.paper.sqlite", txid)
    stop_id = open_stops(where / "s.sqlite")[0]["id"]

    for _ in range(2):                          # every reconcile fails the same way, and says which order
        done = main(capsys, "reconcile", "--config", str(config))
        assert done.returncode == 1
        found = report(done)
        assert any("EOrder:Invalid order" in e for e in found["errors"])
        assert [(o["order_id"], o["txid"], o["role"]) for o in found["forgotten_orders"]] == \
            [(stop_id, txid, "stop_loss")]
        assert "--resolve ORDER_ID` ends each as cancelled" in done.stderr and stop_id in done.stderr

    done = main(capsys, "reconcile", "--config", str(config), "--resolve", "ord-nobody")
    assert done.returncode == 2 and "ord-nobody: no order with this id" in done.stderr

    before = digest(where / "s.sqlite")
    done = main(capsys, "reconcile", "--config", str(config), "--resolve", txid, "--dry-run")   # by txid too
    assert done.returncode == 0, done.stderr
    assert report(done)["resolved"][0]["resolved_as"] == "CANCELLED" and digest(where / "s.sqlite") == before

    done = run("reconcile", "--config", str(config), "--resolve", stop_id, cwd=where)
    assert done.returncode == 0, done.stderr
    resolved = report(done)["resolved"]
    assert [(r["order_id"], r["state"], r["resolved_as"]) for r in resolved] == [(stop_id, "OPEN", "CANCELLED")]
    assert "reconcile --resolve, by " in resolved[0]["reason"]
    assert f"resolved {stop_id} ({txid}): OPEN -> CANCELLED" in done.stderr

    done = main(capsys, "reconcile", "--config", str(config), "--resolve", stop_id)   # once is enough
    assert done.returncode == 2 and "CANCELLED; there is nothing to resolve" in done.stderr
    done = main(capsys, "reconcile", "--config", str(config))
    assert done.returncode == 0 and report(done)["errors"] == []
    stops = open_stops(where / "s.sqlite")
    assert len(stops) == 1 and stops[0]["id"] != stop_id               # the position is protected again

    # the audit trail: the transition's reason and an alert, both naming who resolved it
    done = main(capsys, "events", "--store", str(where / "s.sqlite"), "--entity-id", stop_id, "--format", "json")
    cancel = [e for e in json.loads(done.stdout) if e["to_state"] == "CANCELLED"]
    assert len(cancel) == 1 and cancel[0]["reason"].startswith(f"resolved by hand: the exchange no longer knows {txid}")
    done = main(capsys, "events", "--store", str(where / "s.sqlite"), "--kind", "alerts", "--format", "json")
    alerts = [a for a in json.loads(done.stdout) if a["alert_type"] == "order_resolved"]
    assert len(alerts) == 1 and alerts[0]["order_id"] == stop_id and alerts[0]["severity"] == "high"
    assert "reconcile --resolve, by " in json.loads(alerts[0]["payload"])["resolved_by"]


def test_resolve_refuses_an_order_the_exchange_still_knows(protected: tuple[Path, str, str],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    config, _, txid = protected
    done = main(capsys, "reconcile", "--config", str(config), "--resolve", txid)
    assert done.returncode == 2
    assert f"the exchange still knows {txid} (status open)" in done.stderr


def test_paper_mode_with_a_loopback_base_url_is_refused_not_ignored(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("exchange:\n  mode: paper\n  base_url: http://127.0.0.1:8765\nstorage:\n  path: s.sqlite\n",
                      encoding="utf-8")
    ExecutionCore.from_config(tmp_path / "c.yaml").close()
    done = main(capsys, "reconcile", "--config", str(config))
    assert done.returncode == 2
    assert "is a loopback server, but exchange.mode: paper" in done.stderr and "exchange.mode: live" in done.stderr
