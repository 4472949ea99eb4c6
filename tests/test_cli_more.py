"""More of the command line through main([...]): a paper session from a config file, reconcile finding
drift, diagrams without graphviz, `exchange serve` in process, and argument checks."""
from __future__ import annotations

import _thread
import json
import threading
from decimal import Decimal as D
from pathlib import Path

import pytest
import requests

from triplegain_fsm import cli, diagrams
from triplegain_fsm.models import LegLocation, OrderSide, Position
from triplegain_fsm.paper import PaperExchange
from triplegain_fsm.paper import server as paper_server
from triplegain_fsm.paper_account import META_KEY
from triplegain_fsm.store import Store

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    assert "Traceback" not in text
    return lines[0]


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(("argv", "message"), [
    (["paper", "--poll-every", "0"], "must be >= 1, got 0"),
    (["paper", "--progress-every", "ten"], "not an integer: 'ten'"),
    (["paper", "--scale", "abc"], "not a number: 'abc'"),
    (["paper", "--scale", "Infinity"], "must be a positive number"),
    (["exchange", "serve", "--port", "http"], "not a TCP port: 'http'"),
    (["exchange"], "required"),
])
def test_bad_arguments_are_one_line_usage_errors(argv: list[str], message: str,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(argv) == 2
    assert message in one_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- paper with a config file


@pytest.mark.integration
def test_paper_with_a_paper_config_uses_its_balances_and_explains_a_rejected_entry(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "paper.yaml"
    config.write_text("exchange:\n  mode: paper\nstorage:\n  path: ignored.sqlite\n"
                      "paper:\n  balances: {ZUSD: 2000}\n  prices: {BTC/USD: 43000}\n", encoding="utf-8")
    prices = tmp_path / "p.csv"
    prices.write_text("unix_time,price,volume\n" + "".join(f"{1_700_000_000 + i},{43000 + i % 3},0.5\n"
                                                           for i in range(40)), encoding="utf-8")
    schedule = tmp_path / "s.yaml"
    schedule.write_text("actions:\n"
                        "  - {at: 2, open: big, size_usd: 5000, stop_loss_pct: 2}\n"
                        "  - {at: 3, open: small, size_usd: 500, stop_loss_pct: 2, take_profit_pct: 2}\n",
                        encoding="utf-8")
    store = tmp_path / "session.sqlite"
    argv = ["paper", "--config", str(config), "--prices", str(prices), "--proposals", str(schedule),
            "--store", str(store), "--progress-every", "50"]
    assert cli.main(argv) == 0
    captured = capsys.readouterr()
    assert "paper session: 40 ticks of BTC/USD" in captured.err
    assert [line.split()[0] for line in captured.err.splitlines() if "ticks" in line and "%" in line] == \
        ["50%", "100%"]
    assert "not placed (rejected): ws add_order: EOrder:Insufficient funds" in captured.out
    rejected = [line for line in captured.out.splitlines() if line.startswith("rejected:")]
    assert rejected[0] == "rejected: 1 entry: ws add_order: EOrder:Insufficient funds"   # no spot note for an entry
    assert f"store: {store}" in captured.out and store.is_file()
    assert not (tmp_path / "ignored.sqlite").exists()      # --store wins over the config's storage.path


# --------------------------------------------------------------------------- reconcile


def test_reconcile_that_finds_drift_prints_it_and_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = Store(tmp_path / "s.sqlite")
    held = Position(symbol="BTC/USD", side=OrderSide.BUY, size=D("0.0116"), entry_size=D("0.0116"),
                    entry_price=D("43000.5"), stop_loss=D("41000"), stop_loss_location=LegLocation.LOCAL,
                    state="UNPROTECTED")
    with store.transaction():
        store.save_position(held)
    paper = PaperExchange(state_path=tmp_path / "s.paper.sqlite")   # the (empty) paper account the store knows
    store.set_meta(META_KEY, paper.account_id)
    paper.close()
    store.close()
    config = tmp_path / "c.yaml"
    config.write_text("exchange:\n  mode: paper\nstorage:\n  path: s.sqlite\n", encoding="utf-8")
    assert cli.main(["reconcile", "--config", str(config)]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out[:captured.out.rindex("}") + 1])
    assert report["position_drift"] == [{"asset": "XXBT", "kind": "spot", "core": "0.0116", "exchange": "0",
                                         "position_ids": [held.id], "txids": []}]
    assert report["positions_closed"] == [held.id]
    assert "reconcile found differences" in captured.err


# --------------------------------------------------------------------------- diagrams


def test_diagrams_without_graphviz_write_the_text_files_and_warn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    assert not diagrams.dot_available()
    out = tmp_path / "d"
    assert cli.main(["diagrams", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "dot` is not installed" in one_line(captured.err)
    assert sorted(p.name for p in out.iterdir()) == sorted(diagrams.expected_text_files())
    assert "updated" in captured.out
    assert cli.main(["diagrams", "--out", str(out)]) == 0
    assert "already up to date" in capsys.readouterr().out


def test_diagrams_check_defaults_to_the_checkout(capsys: pytest.CaptureFixture[str]) -> None:
    assert diagrams.default_directory() == REPO / "diagrams"
    assert cli.main(["diagrams", "--check"]) == 0
    assert capsys.readouterr().out.strip() == f"{REPO / 'diagrams'}: up to date"


def test_diagrams_outside_a_checkout_default_to_the_working_directory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(diagrams, "_CHECKOUT", tmp_path / "site-packages")   # an installed wheel: no setup.cfg
    monkeypatch.chdir(tmp_path)
    assert diagrams.default_directory() == tmp_path / "diagrams"
    assert cli.main(["diagrams", "--check"]) == 2
    assert f"{tmp_path / 'diagrams'}: no such directory" in one_line(capsys.readouterr().err)


# --------------------------------------------------------------------------- exchange serve


@pytest.mark.integration
def test_exchange_serve_in_process_serves_the_config_and_stops_on_ctrl_c(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("paper:\n  prices: {BTC/USD: 51234.5}\n", encoding="utf-8")
    servers: list[paper_server.PaperServer] = []
    bound = threading.Event()

    class Recording(paper_server.PaperServer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            servers.append(self)
            bound.set()

    monkeypatch.setattr(paper_server, "PaperServer", Recording)
    answers: list[dict] = []

    def client() -> None:
        if not bound.wait(10):
            return                                   # the command failed before binding: nothing to stop
        try:
            answers.append(requests.get(f"{servers[0].url}/0/public/Ticker?pair=XBTUSD", timeout=5).json())
        finally:
            _thread.interrupt_main()                 # Ctrl-C while the command is serving

    helper = threading.Thread(target=client, daemon=True)
    helper.start()
    assert cli.main(["exchange", "serve", "--port", "0", "--config", str(config)]) == 0
    helper.join(5)
    assert answers[0]["result"]["XXBTZUSD"]["c"][0] == "51234.5"
    err = capsys.readouterr().err
    assert f"listening on {servers[0].url}" in err and "'paper-key'" in err and "stopped" in err
    assert "PAPER_API_SECRET" in err and "Traceback" not in err
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(f"{servers[0].url}/0/public/Time", timeout=5)
