"""Looking at a session: the HTML report, status --all / --watch, events --kind, and small CLI manners.

The demo session runs once per module through the real console script; the report,
status and events tests read the store it leaves. An *order event* is one row of the
store's `events` table with entity 'order' (one state change of one order): the
report must draw exactly one marker for each, named `order-event-<seq>`.
"""
from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal as D
from html.parser import HTMLParser
from pathlib import Path

import pytest

from triplegain_fsm import cli, session
from triplegain_fsm.models import LegLocation, Order, OrderRole, OrderSide, OrderType, Position, TradeProposal
from triplegain_fsm.store import Store
from triplegain_fsm.views import fmt, report_data

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).with_name("triplegain-fsm")


def run(*argv: str, cwd: Path | None = None, **kwargs) -> subprocess.CompletedProcess[str]:
    if not SCRIPT.exists():
        pytest.skip("the triplegain-fsm console script is not installed in this environment")
    return subprocess.run([str(SCRIPT), *argv], capture_output=True, text=True, timeout=60, cwd=cwd, **kwargs)


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    assert "Traceback" not in text
    return lines[0]


def query(path: Path, sql: str, params: tuple = ()) -> list[dict]:
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro&immutable=1", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute(sql, params)]
    finally:
        conn.close()


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(path.name + "-"))


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """(store, report) of one demo session run by the console script with --report."""
    where = tmp_path_factory.mktemp("demo")
    store, report = where / "demo.sqlite", where / "demo.html"
    done = run("paper", "--store", str(store), "--report", str(report), "--quiet")
    assert done.returncode == 0, done.stderr
    assert f"report: {report} (1,2" in done.stdout and "34 order events" in done.stdout
    yield store, report


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.ids.extend(value for name, value in attrs if name == "id" and value)


def parse(html: str) -> _Ids:
    parser = _Ids()
    parser.feed(html)
    parser.close()
    return parser


# --------------------------------------------------------------------------- the HTML report


def test_report_marks_every_order_event_once_and_references_nothing_outside(demo: tuple[Path, Path]) -> None:
    store, report = demo
    html = report.read_text(encoding="utf-8")
    parsed = parse(html)
    assert "http://" not in html and "https://" not in html
    assert not {"script", "link", "img", "iframe"} & parsed.tags and "svg" in parsed.tags
    order_events = query(store, "SELECT seq FROM events WHERE entity = 'order' ORDER BY seq")
    assert len(order_events) == 34      # 13 placed, 5 partly filled, 10 filled, 3+3 cancel steps; none rejected
    markers = [int(i.rsplit("-", 1)[1]) for i in parsed.ids if re.fullmatch(r"order-event-\d+", i)]
    assert sorted(markers) == [e["seq"] for e in order_events]          # one marker each, no other
    levels = query(store, "SELECT position_id, stop_loss, take_profit FROM levels ORDER BY seq")
    moves = sum(1 for i, row in enumerate(levels) for leg in ("stop_loss", "take_profit")
                if any(r["position_id"] == row["position_id"] for r in levels[:i])
                and row[leg] != [r for r in levels[:i] if r["position_id"] == row["position_id"]][-1][leg])
    assert moves > 30                     # the trailing stop climbs in the recovery, the modify tightens one
    assert sum(1 for i in parsed.ids if i.startswith("level-move-")) == moves


def test_report_pnl_table_has_every_position_and_the_totals_of_the_store(demo: tuple[Path, Path]) -> None:
    store, report = demo
    html = report.read_text(encoding="utf-8")
    positions = query(store, "SELECT id, realized_pnl, total_fees FROM positions")
    assert len(positions) == 5 and all(p["id"] in html for p in positions)
    pnl = sum(D(p["realized_pnl"]) for p in positions)
    fees = sum(D(p["total_fees"]) for p in positions)
    total_row = re.search(r'<tr class="total">(.*?)</tr>', html)
    assert total_row and fmt.money(pnl) in total_row.group(1) and fmt.money(fees, 4) in total_row.group(1)
    for reason in ("close: session end", "stop_loss", "close: manual", "close: take_profit hit", "(trailed)"):
        assert reason in html


def test_report_command_renders_a_past_store_and_writes_nothing_beside_it(demo: tuple[Path, Path],
                                                                          tmp_path: Path) -> None:
    store, _ = demo
    copy = tmp_path / "past.sqlite"
    shutil.copy(store, copy)
    before = copy.read_bytes()
    done = run("report", "--store", str(copy))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"report: {tmp_path / 'past.html'} (")
    assert sum(1 for i in parse((tmp_path / "past.html").read_text("utf-8")).ids if i.startswith("order-event-")) == 34
    out = tmp_path / "elsewhere.html"
    assert run("report", "--store", str(copy), "--output", str(out)).returncode == 0 and out.is_file()
    assert copy.read_bytes() == before and siblings(copy) == []


def test_report_without_matplotlib_says_how_to_install_it(demo: tuple[Path, Path], tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)      # import matplotlib -> ImportError
    assert cli.main(["report", "--store", str(demo[0]), "--output", str(tmp_path / "r.html")]) == 2
    assert "pip install 'triplegain-fsm[report]'" in one_line(capsys.readouterr().err)
    new_store = tmp_path / "p.sqlite"
    assert cli.main(["paper", "--store", str(new_store), "--report", str(tmp_path / "r.html"), "--quiet"]) == 2
    assert "matplotlib" in one_line(capsys.readouterr().err)
    assert not new_store.exists() and not (tmp_path / "r.html").exists()      # refused before the replay


def test_report_of_a_store_without_prices_still_has_the_books(open_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    done = run("report", "--store", str(open_store), "--output", str(out))
    assert done.returncode == 0, done.stderr
    html = out.read_text("utf-8")
    assert "no recorded prices" in html and "pos-" in html and "http" not in html


def test_report_of_a_file_that_is_not_a_store_is_one_line(tmp_path: Path) -> None:
    other = tmp_path / "x.sqlite"
    sqlite3.connect(other).execute("CREATE TABLE x (a)").connection.close()
    done = run("report", "--store", str(other))
    assert done.returncode == 2 and "not a triplegain store" in one_line(done.stderr)


def test_order_events_belong_to_the_tick_they_were_written_in() -> None:
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    ticks = [report_data.Tick(i, at, D(100 + i), seq) for i, seq in enumerate((0, 0, 3, 3, 5))]
    assert [report_data.tick_of(seq, ticks).index for seq in (1, 3, 4, 5, 9)] == [2, 2, 4, 4, 4]


# --------------------------------------------------------------------------- status --all, events --kind


@pytest.fixture
def with_alerts(demo: tuple[Path, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "alerts.sqlite"
    shutil.copy(demo[0], copy)
    store = Store(copy)
    position = query(copy, "SELECT id FROM positions ORDER BY opened_at")[0]["id"]
    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with store.transaction():
        for kind, severity in (("position_unprotected", "critical"), ("exchange_drift", "high"),
                               ("exchange_drift", "high")):
            store.record_alert({"alert_type": kind, "severity": severity, "position_id": position,
                                "message": f"{kind} [test]"}, at)
    store.close()
    return copy


def test_status_all_shows_closed_positions_totals_and_alert_counts(with_alerts: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["status", "--store", str(with_alerts), "--all"]) == 0
    out = capsys.readouterr().out
    assert "Open positions (0; 5 closed)" in out and "Closed positions (5)" in out
    pnl = sum(D(p["realized_pnl"]) for p in query(with_alerts, "SELECT realized_pnl FROM positions"))
    totals = out[out.index("Totals"):]
    assert re.search(rf"realized P&L \(net of fees\)\s+{re.escape(fmt.money(pnl))}\s+{re.escape(fmt.money(pnl))}",
                     totals)
    assert "Alerts (3)" in out
    assert re.search(r"exchange_drift\s+high\s+2", out) and re.search(r"position_unprotected\s+critical\s+1", out)
    assert "43,176.1" in out            # BTC/USD exit prices at the pair's one decimal


def test_events_exports_alerts_and_fills(with_alerts: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["events", "--store", str(with_alerts), "--kind", "alerts", "--format", "json"]) == 0
    alerts = json.loads(capsys.readouterr().out)
    assert [a["alert_type"] for a in alerts] == ["position_unprotected", "exchange_drift", "exchange_drift"]
    assert cli.main(["events", "--store", str(with_alerts), "--kind", "fills", "--format", "json"]) == 0
    fills = json.loads(capsys.readouterr().out)
    assert len(fills) == len(query(with_alerts, "SELECT fill_key FROM fills")) == 15
    assert {f["role"] for f in fills} == {"entry", "stop_loss", "close"} and all(f["position_id"] for f in fills)


def test_events_of_a_position_include_its_orders_events(demo: tuple[Path, Path],
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    store = demo[0]
    position = query(store, "SELECT id FROM positions ORDER BY opened_at")[0]["id"]
    orders = {r["id"] for r in query(store, "SELECT id FROM orders WHERE position_id = ?", (position,))}
    assert cli.main(["events", "--store", str(store), "--format", "json", "--entity-id", position]) == 0
    events = json.loads(capsys.readouterr().out)
    assert {e["entity_id"] for e in events} == {position} | orders
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    marks = ",".join("?" * (len(orders) + 1))
    expected = query(store, f"SELECT COUNT(*) AS n FROM events WHERE entity_id IN ({marks})", (position, *orders))
    assert len(events) == expected[0]["n"]
    assert cli.main(["events", "--store", str(store), "--kind", "fills", "--format", "json",
                     "--entity-id", position]) == 0
    assert {f["order_id"] for f in json.loads(capsys.readouterr().out)} <= orders


def test_events_of_an_unknown_id_is_one_line_exit_1(demo: tuple[Path, Path]) -> None:
    done = run("events", "--store", str(demo[0]), "--entity-id", "pos-nobody")
    assert done.returncode == 1 and done.stdout == ""
    assert "pos-nobody: no order or position with this id" in one_line(done.stderr)


def test_read_only_commands_leave_no_wal_or_shm_files(demo: tuple[Path, Path], tmp_path: Path) -> None:
    copy = tmp_path / "quiet.sqlite"
    shutil.copy(demo[0], copy)
    before = copy.read_bytes()
    for argv in (["status", "--all"], ["events"], ["events", "--kind", "fills"]):
        done = run(*argv, "--store", str(copy))
        assert done.returncode == 0, done.stderr
        assert siblings(copy) == [], argv
    assert copy.read_bytes() == before


# --------------------------------------------------------------------------- status --watch under a terminal


@pytest.fixture
def open_store(tmp_path: Path) -> Path:
    """A store with one protected position (stop at the exchange, target local) and its working stop."""
    path = tmp_path / "live.sqlite"
    store = Store(path)
    position = Position(symbol="BTC/USD", side=OrderSide.BUY, size=D("0.0116"), entry_size=D("0.0116"),
                        entry_price=D("43000.5"), stop_loss=D("41000"), take_profit=D("48000"),
                        stop_loss_location=LegLocation.EXCHANGE, take_profit_location=LegLocation.LOCAL,
                        state="PROTECTED")
    stop = Order(symbol="BTC/USD", side=OrderSide.SELL, order_type=OrderType.STOP_LOSS, size=D("0.0116"),
                 stop_price=D("41000"), role=OrderRole.STOP_LOSS, position_id=position.id,
                 external_id="OBBBBB-BBBBB-BBBBBB", state="OPEN")
    position.stop_loss_order_id = stop.id
    with store.transaction():
        store.save_position(position)
        store.save_order(stop)
        store.record_alert({"alert_type": "orphan_order", "severity": "high", "message": "an [odd] one"},
                           datetime(2026, 1, 1, tzinfo=timezone.utc))
    store.close()
    return path


def _terminal(argv: list[str], until: bytes, timeout: float = 20) -> tuple[subprocess.Popen[bytes], int, bytes]:
    """Start the console script on a 200-column pseudo-terminal; read until `until` shows."""
    if not SCRIPT.exists():
        pytest.skip("the triplegain-fsm console script is not installed in this environment")
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 60, 200, 0, 0))
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "200", "LINES": "60"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([str(SCRIPT), *argv], stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    seen = _read(master, lambda data: until in data, timeout)
    return proc, master, seen


def _read(master: int, done, timeout: float, seen: bytes = b"") -> bytes:
    deadline = time.monotonic() + timeout
    while not done(seen) and time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:     # the other side closed
                break
            if not chunk:
                break
            seen += chunk
    return seen


def _finish(proc: subprocess.Popen[bytes], master: int, seen: bytes) -> bytes:
    seen = _read(master, lambda data: proc.poll() is not None, 15, seen)
    proc.wait(10)
    os.close(master)
    return seen


def test_status_watch_refreshes_read_only_and_ends_cleanly_on_ctrl_c(open_store: Path) -> None:
    before = open_store.read_bytes()
    position = query(open_store, "SELECT id FROM positions")[0]["id"]
    proc, master, seen = _terminal(["status", "--watch", "--store", str(open_store), "--interval", "0.2"],
                                   until=b"refresh #3")
    try:
        assert b"refresh #3" in seen, seen.decode(errors="replace")
    finally:
        proc.send_signal(signal.SIGINT)
        seen = _finish(proc, master, seen)
    text = seen.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "Traceback" not in text and "stopped after" in text
    for expected in (position, "PROTECTED", "41,000.0 @ exchange OPEN", "48,000.0 @ local", "OBBBBB-BBBBB-BBBBBB",
                     "an [odd] one", "orphan_order"):
        assert expected in text, expected
    assert open_store.read_bytes() == before and siblings(open_store) == []


def test_paper_draws_a_progress_bar_on_a_terminal_and_lines_when_piped(tmp_path: Path) -> None:
    proc, master, seen = _terminal(["paper", "--store", str(tmp_path / "t.sqlite")], until=b"OK: books agree")
    text = _finish(proc, master, seen).decode(errors="replace")
    assert proc.returncode == 0, text
    assert "replaying" in text and "━" in text and "1200/1200" in text.replace(",", "")
    assert "  10%  120/1,200 ticks" not in text
    piped = run("paper", "--store", str(tmp_path / "p.sqlite"))
    assert "━" not in piped.stderr and "  10%  120/1,200 ticks" in piped.stderr
    quiet = run("paper", "--store", str(tmp_path / "q.sqlite"), "--quiet")
    assert quiet.stderr == ""


# --------------------------------------------------------------------------- small manners


def test_a_closed_pipe_ends_quietly(demo: tuple[Path, Path]) -> None:
    if not SCRIPT.exists():
        pytest.skip("the triplegain-fsm console script is not installed in this environment")
    proc = subprocess.Popen([str(SCRIPT), "events", "--store", str(demo[0])], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()                       # like `| head` that has already exited
    err = proc.stderr.read().decode()
    proc.wait(30)
    assert proc.returncode == 0 and err == ""


def test_version_flag() -> None:
    from triplegain_fsm import __version__

    done = run("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"triplegain-fsm {__version__}"


def test_prices_by_the_name_of_a_shipped_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    schedule = tmp_path / "s.yaml"
    schedule.write_text("actions:\n  - {at: 5, open: a, size_usd: 1000, stop_loss_pct: 3, take_profit_pct: 3}\n",
                        encoding="utf-8")
    monkeypatch.chdir(tmp_path)   # nowhere near the repository: the name is resolved in the package's data/
    argv = ["paper", "--prices", "kraken_bcheur_trades_q2.csv", "--scale", "475", "--proposals", str(schedule),
            "--store", str(tmp_path / "p.sqlite"), "--quiet"]
    assert cli.main(argv) == 0
    assert "Positions (1)" in capsys.readouterr().out
    assert cli.main(["paper", "--prices", "nope.csv", "--quiet"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "nope.csv: no such price file" in line and "kraken_bcheur_trades_q2.csv" in line


def test_actions_are_described_at_the_pairs_decimals_and_signed_by_side() -> None:
    short = session.Open(ref="s", size_usd=D(500), side="sell", stop_loss_pct=D(3), take_profit_pct=D(8))
    assert session._describe(short, "BTC/USD").endswith("sl +3% tp -8%")
    long = session.Open(ref="l", size_usd=D(500), stop_loss_pct=D(3), take_profit_pct=D(8))
    assert session._describe(long, "BTC/USD").endswith("sl -3% tp +8%")
    proposal = TradeProposal(symbol="BTC/USD", side="buy", size_usd=D("5E+2"), entry_price=D("4.3E+4"),
                             stop_loss=D("41000.123456"), take_profit=D("44469.49999673890293137050865"), id="p")
    text = session._describe(proposal)
    assert text == "open p: buy $500 BTC/USD limit 43000.0, sl 41000.1 tp 44469.5"
    assert "E+" not in text
