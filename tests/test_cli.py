"""The command line: every subcommand through main([...]), exit codes, and one-line errors.

A person runs these by hand; an expected failure (missing file, bad config)
must be one readable line on stderr with a non-zero code, never a traceback.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal as D
from pathlib import Path

import pytest
import requests

from triplegain_fsm import cli, diagrams
from triplegain_fsm.machines.base import TransitionRecord
from triplegain_fsm.models import LegLocation, Order, OrderRole, OrderSide, OrderType, Position
from triplegain_fsm.store import Store

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    assert "Traceback" not in text
    return lines[0]


@pytest.fixture
def store_file(tmp_path: Path) -> Path:
    """A store with one open order, one filled order, one open position and their events."""
    path = tmp_path / "s.sqlite"
    store = Store(path)
    position = Position(symbol="BTC/USD", side=OrderSide.BUY, size=D("0.0116"), entry_price=D("43000.5"),
                        stop_loss=D("41000"), take_profit=D("48000"), stop_loss_location=LegLocation.EXCHANGE,
                        take_profit_location=LegLocation.LOCAL, state="PROTECTED")
    entry = Order(symbol="BTC/USD", side=OrderSide.BUY, order_type=OrderType.MARKET, size=D("0.0116"),
                  filled_size=D("0.0116"), position_id=position.id, external_id="OAAAAA-AAAAA-AAAAAA",
                  state="FILLED")
    stop = Order(symbol="BTC/USD", side=OrderSide.SELL, order_type=OrderType.STOP_LOSS, size=D("0.0116"),
                 stop_price=D("41000"), role=OrderRole.STOP_LOSS, position_id=position.id,
                 external_id="OBBBBB-BBBBB-BBBBBB", state="OPEN")
    at = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    records = [
        TransitionRecord("order", entry.id, "PENDING", "OPEN", "acknowledge", "accepted", None, at),
        TransitionRecord("order", entry.id, "OPEN", "FILLED", "fill", "filled 0.0116 @ 43000.5", "ab12", at),
        TransitionRecord("position", position.id, "OPENING", "UNPROTECTED", "entry_filled", "entry, filled", None, at),
        TransitionRecord("order", stop.id, "PENDING", "OPEN", "acknowledge", 'said "ok"', None, at),
    ]
    with store.transaction():
        store.save_position(position)
        store.save_order(entry)
        store.save_order(stop)
        store.append_events(records)
    store.close()
    return path


# --------------------------------------------------------------------------- usage and errors


def test_help_exits_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("paper", "status", "reconcile", "diagrams", "events", "exchange"):
        assert command in out


def test_unknown_command_is_one_line_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["bogus"]) == 2
    assert "invalid choice" in one_line(capsys.readouterr().err)


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([]) == 2
    one_line(capsys.readouterr().err)


@pytest.mark.parametrize("argv", [
    ["paper", "--config", "{missing}"],
    ["status", "--config", "{missing}"],
    ["reconcile", "--config", "{missing}"],
    ["events", "--config", "{missing}"],
    ["exchange", "serve", "--config", "{missing}"],
])
def test_missing_config_file_is_one_line_exit_2(argv: list[str], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nope.yaml")
    assert cli.main([a.replace("{missing}", missing) for a in argv]) == 2
    line = one_line(capsys.readouterr().err)
    assert missing in line and "no such config file" in line


def test_bad_config_is_one_line_naming_the_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("orders:\n  poll_intervall: 5\n", encoding="utf-8")
    assert cli.main(["reconcile", "--config", str(config)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "orders.poll_intervall" in line and "did you mean" in line


def test_secret_in_config_is_refused_without_echoing_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("exchange:\n  api_secret: hunter2hunter2\n", encoding="utf-8")
    assert cli.main(["status", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "exchange.api_secret" in one_line(err) and "hunter2" not in err


def test_paper_refuses_a_live_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "live.yaml"
    config.write_text("exchange:\n  mode: live\n", encoding="utf-8")
    assert cli.main(["paper", "--config", str(config), "--store", str(tmp_path / "p.sqlite")]) == 2
    assert "paper mode" in one_line(capsys.readouterr().err)


def test_paper_refuses_an_existing_store(store_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["paper", "--store", str(store_file), "--quiet"]) == 2
    assert "already exists" in one_line(capsys.readouterr().err)


def test_missing_price_file_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["paper", "--prices", str(tmp_path / "none.csv"), "--store", str(tmp_path / "p.sqlite"), "--quiet"]
    assert cli.main(argv) == 2
    assert "no such price file" in one_line(capsys.readouterr().err)


def test_bad_numbers_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["paper", "--scale", "-3"]) == 2
    assert "positive" in one_line(capsys.readouterr().err)
    assert cli.main(["exchange", "serve", "--port", "70000"]) == 2
    assert "port" in one_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- status


def test_status_lists_open_orders_and_positions(store_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = store_file.read_bytes()
    assert cli.main(["status", "--store", str(store_file)]) == 0
    out = capsys.readouterr().out
    assert "Open orders (1)" in out and "OBBBBB-BBBBB-BBBBBB" in out
    assert "OAAAAA" not in out  # the filled order is not open
    assert "Open positions (1; 0 closed)" in out and "PROTECTED" in out and "41,000.00" in out
    assert "1 FILLED, 1 OPEN" in out
    assert store_file.read_bytes() == before  # read-only


def test_status_reads_the_store_named_by_the_config(store_file: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(f"storage:\n  path: {store_file.name}\n", encoding="utf-8")
    assert cli.main(["status", "--config", str(config)]) == 0
    assert str(store_file) in capsys.readouterr().out


def test_status_of_a_missing_store_does_not_create_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nothing.sqlite"
    assert cli.main(["status", "--store", str(missing)]) == 2
    assert "no such store" in one_line(capsys.readouterr().err)
    assert not missing.exists()


def test_status_of_a_file_that_is_not_a_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    other = tmp_path / "other.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.close()
    text = tmp_path / "text.sqlite"
    text.write_text("hello, not sqlite at all" * 100, encoding="utf-8")
    for path in (other, text):
        assert cli.main(["status", "--store", str(path)]) == 2
        assert "not a triplegain store" in one_line(capsys.readouterr().err)


def test_status_options_are_exclusive(store_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--store", str(store_file), "--config", "x.yaml"]) == 2
    assert "not allowed with" in one_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- events


def test_events_json_parses_and_keeps_order(store_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["events", "--store", str(store_file), "--format", "json"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert events[1]["trigger"] == "fill" and events[1]["to_state"] == "FILLED"
    assert events[1]["payload_digest"] == "ab12" and events[1]["at"].startswith("2024-01-02T03:04:05")


def test_events_csv_round_trips_commas_and_quotes(store_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["events", "--store", str(store_file)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 4
    assert rows[2]["reason"] == "entry, filled" and rows[3]["reason"] == 'said "ok"'


def test_events_for_one_entity_to_a_file(store_file: Path, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    entity = json.loads(_events_json(store_file))[0]["entity_id"]
    capsys.readouterr()
    out = tmp_path / "events.json"
    argv = ["events", "--store", str(store_file), "--format", "json", "--entity-id", entity, "--output", str(out)]
    assert cli.main(argv) == 0
    events = json.loads(out.read_text(encoding="utf-8"))
    assert len(events) == 2 and {e["entity_id"] for e in events} == {entity}
    assert "2 events written" in capsys.readouterr().err


def test_events_to_an_unwritable_place_is_one_line_runtime_error(store_file: Path, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "no-such-dir" / "e.csv"
    assert cli.main(["events", "--store", str(store_file), "--output", str(target)]) == 1
    assert str(target) in one_line(capsys.readouterr().err)


def test_events_bad_format_is_usage_error(store_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["events", "--store", str(store_file), "--format", "xml"]) == 2
    one_line(capsys.readouterr().err)


def _events_json(store_file: Path) -> str:
    buffer = io.StringIO()
    conn = sqlite3.connect(store_file)
    conn.row_factory = sqlite3.Row
    json.dump([dict(r) for r in conn.execute("SELECT * FROM events ORDER BY seq")], buffer)
    conn.close()
    return buffer.getvalue()


# --------------------------------------------------------------------------- diagrams


def test_diagrams_check_passes_on_the_committed_diagrams(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["diagrams", "--check", "--out", str(REPO / "diagrams")]) == 0
    assert "up to date" in capsys.readouterr().out


def test_diagrams_writes_then_check_finds_a_stale_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "d"
    assert cli.main(["diagrams", "--out", str(out)]) == 0
    assert (out / "order.mmd").read_bytes() == diagrams.mermaid(diagrams.DIAGRAMS[0]).encode()
    assert cli.main(["diagrams", "--check", "--out", str(out)]) == 0
    (out / "position.mmd").write_text("stale\n", encoding="utf-8")
    capsys.readouterr()
    assert cli.main(["diagrams", "--check", "--out", str(out)]) == 1
    assert "position.mmd" in one_line(capsys.readouterr().err)


def test_diagrams_check_of_a_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["diagrams", "--check", "--out", str(tmp_path / "none")]) == 2
    assert "no such directory" in one_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- reconcile


def test_reconcile_in_paper_mode_prints_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from triplegain_fsm.core import ExecutionCore

    config = tmp_path / "c.yaml"
    config.write_text("exchange:\n  mode: paper\nstorage:\n  path: r.sqlite\n", encoding="utf-8")
    ExecutionCore.from_config(config).close()       # a store and the paper account it trades on
    assert cli.main(["reconcile", "--config", str(config)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["orders_checked"] == 0 and report["position_drift"] == [] and report["errors"] == []
    assert report["dry_run"] is False and report["resolved"] == [] and report["forgotten_orders"] == []


def test_reconcile_of_a_missing_store_creates_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("exchange:\n  mode: paper\nstorage:\n  path: r.sqlite\n", encoding="utf-8")
    assert cli.main(["reconcile", "--config", str(config)]) == 2
    assert "r.sqlite: no such store" in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.yaml"]


def test_reconcile_live_without_credentials_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("KRAKEN_API_KEY", raising=False)
    monkeypatch.delenv("KRAKEN_API_SECRET", raising=False)
    config = tmp_path / "c.yaml"
    config.write_text("exchange:\n  mode: live\nstorage:\n  path: r.sqlite\n", encoding="utf-8")
    Store(tmp_path / "r.sqlite").close()
    assert cli.main(["reconcile", "--config", str(config)]) == 2
    assert "KRAKEN_API_KEY" in one_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- paper


@pytest.mark.integration
def test_paper_demo_prints_the_books_and_keeps_the_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "demo.sqlite"
    assert cli.main(["paper", "--store", str(store)]) == 0
    captured = capsys.readouterr()
    for section in ("Actions (8)", "Orders (", "Positions (5)", "Totals", "realized P&L (net of fees)"):
        assert section in captured.out
    assert "OK: books agree to the cent, nothing left open" in captured.out
    assert "open orders left on the paper exchange: 0" in captured.out
    assert f"store: {store}" in captured.out and store.is_file()
    progress = [line for line in captured.err.splitlines() if "ticks" in line and "%" in line]
    assert progress[-1].strip().startswith("100%") and len(progress) == 10
    # the kept store is what status and events read
    assert cli.main(["status", "--store", str(store)]) == 0
    assert "Open positions (0; 5 closed)" in capsys.readouterr().out
    assert cli.main(["events", "--store", str(store), "--format", "json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) > 20


@pytest.mark.integration
def test_paper_replays_a_price_file_with_a_yaml_schedule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schedule = tmp_path / "s.yaml"
    schedule.write_text("actions:\n"
                        "  - {at: 5, open: a, size_usd: 1000, stop_loss_pct: 3, take_profit_pct: 3}\n"
                        "  - {at: '50%', close: a}\n", encoding="utf-8")
    prices = REPO / "triplegain_fsm" / "data" / "kraken_bcheur_trades.csv"
    argv = ["paper", "--prices", str(prices), "--scale", "475", "--proposals", str(schedule),
            "--store", str(tmp_path / "p.sqlite"), "--quiet", "--poll-every", "3"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert captured.err == ""  # --quiet
    assert "close: manual" in captured.out and "Positions (1)" in captured.out


def test_paper_with_an_unknown_symbol_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["paper", "--symbol", "DOGE/USD", "--store", str(tmp_path / "p.sqlite"), "--quiet"]) == 2
    assert "'DOGE/USD' is not a Kraken pair" in one_line(capsys.readouterr().err)


def test_paper_with_a_bad_schedule_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    schedule = tmp_path / "s.yaml"
    schedule.write_text("actions:\n  - {at: 1, close: nobody}\n", encoding="utf-8")
    assert cli.main(["paper", "--proposals", str(schedule), "--store", str(tmp_path / "p.sqlite"), "--quiet"]) == 2
    assert "no entry 'nobody'" in one_line(capsys.readouterr().err)
    assert cli.main(["paper", "--proposals", str(tmp_path / "none.yaml"), "--quiet"]) == 2
    assert "no such schedule file" in one_line(capsys.readouterr().err)


def test_paper_exits_1_when_the_books_do_not_balance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from triplegain_fsm import session

    def unbalanced(*args, **kwargs):
        return session.SessionSummary(
            symbol="BTC/USD", ticks=1, elapsed_seconds=0.1, store_path=str(tmp_path / "p.sqlite"), orders=(),
            positions=(), actions=(), orders_by_status={}, partially_filled_orders=0, total_fees=D(1),
            exchange_fees=D(1), core_pnl=D("10.00"), exchange_pnl=D("10.02"), open_exchange_orders=1,
            open_positions=0, alerts_by_type={})

    monkeypatch.setattr(session, "run_paper_session", unbalanced)
    assert cli.main(["paper", "--store", str(tmp_path / "p.sqlite"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "1 order(s) still open on the paper exchange" in err and "total P&L: core 10.00 != exchange 10.02" in err


# --------------------------------------------------------------------------- exchange serve


@pytest.mark.integration
def test_exchange_serve_answers_on_loopback_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "triplegain_fsm.cli", "exchange", "serve", "--port", "0"],
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        reply = requests.get(f"{match.group(1)}/0/public/Time", timeout=5).json()
        assert reply["error"] == [] and "unixtime" in reply["result"]
    finally:
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "Traceback" not in err and "stopped" in err


def test_exchange_serve_on_a_busy_port_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default config keeps its paper account beside the default store
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert cli.main(["exchange", "serve", "--port", str(port)]) == 1
    assert "in use" in one_line(capsys.readouterr().err)
