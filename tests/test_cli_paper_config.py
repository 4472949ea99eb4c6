"""`triplegain-fsm paper` and its files: the demo's config shipped as a file, a config's storage.path
honoured, no empty store left by a failed run, no directory made for a mistyped path."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from triplegain_fsm import cli, session
from triplegain_fsm.cli.cmd_paper import demo_config
from triplegain_fsm.config import Config

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("triplegain-fsm")
SHIPPED = REPO / "triplegain_fsm" / "data" / "demo.yaml"


def one_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line, got:\n{text}"
    assert "Traceback" not in text
    return lines[0]


@pytest.fixture
def small(tmp_path: Path) -> list[str]:
    """A 40-tick price file and a one-trade schedule: a session in a fraction of a second."""
    prices = tmp_path / "p.csv"
    prices.write_text("unix_time,price,volume\n" + "".join(f"{1_700_000_000 + i},{43000 + i % 3},0.5\n"
                                                           for i in range(40)), encoding="utf-8")
    schedule = tmp_path / "s.yaml"
    schedule.write_text("actions:\n  - {at: 2, open: a, size_usd: 500, stop_loss_pct: 2, take_profit_pct: 2}\n",
                        encoding="utf-8")
    return ["--prices", str(prices), "--proposals", str(schedule), "--quiet"]


def test_the_demo_config_is_a_shipped_file_and_config_demo_yaml_is_the_same(tmp_path: Path) -> None:
    assert (REPO / "config" / "demo.yaml").read_bytes() == SHIPPED.read_bytes()
    store = tmp_path / "d.sqlite"
    assert demo_config(store) == session.demo_config(store)      # the file says what the demo runs on
    loaded = Config.load(REPO / "config" / "demo.yaml")
    assert loaded.limits.max_positions_per_symbol == 5 and loaded.exchange.mode == "paper"


@pytest.mark.integration
@pytest.mark.slow   # the equality above already proves it; this runs the 1,200 ticks once more
def test_paper_with_config_demo_yaml_runs_the_whole_demo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "demo.sqlite"
    assert cli.main(["paper", "--config", str(REPO / "config" / "demo.yaml"), "--store", str(store), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Positions (5)" in out and "refused or skipped: 0" in out and "OK: books agree to the cent" in out


def test_paper_config_storage_path_names_the_store(tmp_path: Path, small: list[str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "conf").mkdir()
    config = tmp_path / "conf" / "p.yaml"
    config.write_text("exchange:\n  mode: paper\nstorage:\n  path: session.sqlite\n", encoding="utf-8")
    assert cli.main(["paper", "--config", str(config), *small]) == 0
    assert f"store: {tmp_path / 'conf' / 'session.sqlite'}" in capsys.readouterr().out   # relative to the config
    assert (tmp_path / "conf" / "session.paper.sqlite").is_file()
    assert cli.main(["paper", "--config", str(config), *small]) == 2                      # never reused
    assert "session.sqlite: already exists; a paper session needs a new store file" in \
        one_line(capsys.readouterr().err)


def test_paper_config_without_storage_path_gets_a_fresh_store(tmp_path: Path, small: list[str],
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "p.yaml"
    config.write_text("exchange:\n  mode: paper\n", encoding="utf-8")
    assert cli.main(["paper", "--config", str(config), *small]) == 0
    assert "store: " + str(tmp_path / "triplegain-paper-") in capsys.readouterr().out
    assert not (tmp_path / "triplegain.sqlite").exists()          # the default storage.path is not taken


def test_a_failed_run_leaves_no_empty_store_behind(tmp_path: Path) -> None:
    if not SCRIPT.exists():
        pytest.skip("the triplegain-fsm console script is not installed in this environment")
    done = subprocess.run([str(SCRIPT), "paper", "--symbol", "DOGE/USD", "--store", "x.sqlite", "--quiet"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "'DOGE/USD' is not a Kraken pair" in one_line(done.stderr)
    assert list(tmp_path.iterdir()) == []                         # neither the store nor its paper account


def test_a_store_in_a_missing_directory_is_refused_not_made(tmp_path: Path, small: list[str],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["paper", "--store", str(tmp_path / "typo" / "s.sqlite"), *small]) == 2
    line = one_line(capsys.readouterr().err)
    assert f"the directory {tmp_path / 'typo'} does not exist" in line and "create it first" in line
    config = tmp_path / "p.yaml"
    config.write_text("exchange:\n  mode: paper\nstorage:\n  path: data/s.sqlite\n", encoding="utf-8")
    assert cli.main(["paper", "--config", str(config), *small]) == 2
    assert f"the directory {tmp_path / 'data'} does not exist" in one_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv", "p.yaml", "s.yaml"]


def test_a_new_store_beside_an_old_paper_account_is_refused(tmp_path: Path, small: list[str],
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["paper", "--store", str(tmp_path / "a.sqlite"), *small]) == 0
    capsys.readouterr()
    (tmp_path / "a.sqlite").unlink()                             # the store deleted, its paper account kept
    assert cli.main(["paper", "--store", str(tmp_path / "a.sqlite"), *small]) == 2
    assert "a.paper.sqlite: a paper account already lives there" in one_line(capsys.readouterr().err)


def test_paper_refuses_a_loopback_base_url(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "p.yaml"
    config.write_text("exchange:\n  mode: paper\n  base_url: http://localhost:8765\n", encoding="utf-8")
    assert cli.main(["paper", "--config", str(config), "--quiet"]) == 2
    assert "is a loopback server, but exchange.mode: paper" in one_line(capsys.readouterr().err)
