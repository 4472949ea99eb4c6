"""`triplegain-fsm exchange serve` through the real console script: a price file replayed into the served
exchange, the keys it prints or takes from the environment, --verbose, and the port of a config's base_url."""
from __future__ import annotations

import base64
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal as D
from pathlib import Path

import krakenex
import pytest

from triplegain_fsm import cli
from triplegain_fsm.kraken.signing import NonceSource
from triplegain_fsm.paper import PAPER_API_SECRET

pytestmark = pytest.mark.integration

SCRIPT = Path(sys.executable).with_name("triplegain-fsm")
BCHEUR = Path(__file__).resolve().parent.parent / "triplegain_fsm" / "data" / "kraken_bcheur_trades.csv"


class Served:
    """The console script serving in a subprocess; `until(text)` reads its stderr up to a line with it."""

    def __init__(self, *argv: str, cwd: Path, env: dict[str, str] | None = None) -> None:
        if not SCRIPT.exists():
            pytest.skip("the triplegain-fsm console script is not installed in this environment")
        base = {k: v for k, v in os.environ.items() if k not in ("KRAKEN_API_KEY", "KRAKEN_API_SECRET")}
        self.proc = subprocess.Popen([str(SCRIPT), "exchange", "serve", *argv], stderr=subprocess.PIPE, cwd=cwd,
                                     env={**base, "PYTHONUNBUFFERED": "1", **(env or {})})
        self.lines: list[str] = []
        self._seen = 0
        self._partial = b""

    def until(self, text: str, seconds: float = 20) -> str:
        """The next line holding `text` (read with os.read: a buffered reader would hide lines from select)."""
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        deadline = time.monotonic() + seconds
        while True:
            while self._seen < len(self.lines):
                line = self.lines[self._seen]
                self._seen += 1
                if text in line:
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"no line with {text!r} in:\n{''.join(self.lines)}")
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"exited before a line with {text!r}:\n{''.join(self.lines)}")
                *complete, self._partial = (self._partial + chunk).split(b"\n")
                self.lines.extend(line.decode() + "\n" for line in complete)

    @property
    def url(self) -> str:
        match = re.search(r"listening on (http://127\.0\.0\.1:\d+)", self.until("listening on"))
        assert match
        return match.group(1)

    def stop(self) -> str:
        self.proc.send_signal(signal.SIGINT)
        _, rest = self.proc.communicate(timeout=10)
        return "".join(self.lines) + (self._partial + rest).decode()


def client(url: str, key: str = "paper-key", secret: str = PAPER_API_SECRET) -> krakenex.API:
    api = krakenex.API(key=key, secret=secret)
    api.uri = url
    api._nonce = NonceSource().next
    return api


def test_serve_replays_a_shipped_price_file_logs_requests_and_prints_the_paper_keys(tmp_path: Path) -> None:
    served = Served("--port", "0", "--prices", "kraken_bcheur_trades.csv", "--scale", "475", "--speed", "1e6",
                    "--verbose", cwd=tmp_path)
    try:
        url = served.url
        secret = served.until("API secret:").split("API secret:")[1].strip()
        assert secret == PAPER_API_SECRET
        served.until("replay finished (148 ticks)")
        api = client(url)
        last_row = BCHEUR.read_text(encoding="utf-8").strip().splitlines()[-1].split(",")
        ticker = api.query_public("Ticker", {"pair": "XBTUSD"})["result"]["XXBTZUSD"]
        assert D(ticker["c"][0]) == (D(last_row[1]) * 475).quantize(D("0.1"))
        trades = api.query_public("Trades", {"pair": "XBTUSD"})["result"]["XXBTZUSD"]
        assert len(trades) == 148
        assert api.query_private("Balance")["result"]["ZUSD"].startswith("100000")   # the printed key signs
        served.until("GET /0/public/Trades?pair=XBTUSD -> 200")
        served.until("POST /0/private/Balance -> 200")
        api.close()
    finally:
        err = served.stop()
    assert served.proc.returncode == 0 and "Traceback" not in err and "paper exchange stopped" in err
    assert "prices: replaying 148 ticks of BTC/USD from kraken_bcheur_trades.csv x475" in err
    assert "/admin/price" in err and (tmp_path / "triplegain.paper.sqlite").is_file()


def test_serve_takes_the_key_pair_from_the_environment_and_never_prints_the_secret(tmp_path: Path) -> None:
    secret = base64.b64encode(b"a secret of the bot's own, 64 bytes long......................").decode()
    served = Served("--port", "0", cwd=tmp_path, env={"KRAKEN_API_KEY": "bot-key", "KRAKEN_API_SECRET": secret})
    try:
        url = served.url
        own = client(url, "bot-key", secret)
        assert own.query_private("Balance")["error"] == []
        paper = client(url)
        assert paper.query_private("Balance")["error"] == ["EAPI:Invalid key"]
        own.close()
        paper.close()
    finally:
        err = served.stop()
    assert secret not in err and PAPER_API_SECRET not in err and "KRAKEN_API_SECRET (not shown)" in err


def test_serve_listens_on_the_port_of_the_configs_loopback_base_url(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "bot.yaml"
    config.write_text(f"exchange:\n  mode: live\n  base_url: http://127.0.0.1:{port}\n", encoding="utf-8")
    served = Served("--config", str(config), cwd=tmp_path)
    try:
        assert served.url == f"http://127.0.0.1:{port}"
    finally:
        served.stop()


@pytest.mark.parametrize(("argv", "env", "message"), [
    (["--speed", "0"], {}, "must be a positive number"),
    (["--prices", "nope.csv"], {}, "nope.csv: no such price file"),
    (["--prices", str(BCHEUR), "--symbol", "DOGE/USD"], {}, "DOGE/USD"),
    ([], {"KRAKEN_API_KEY": "k"}, "set both KRAKEN_API_KEY and KRAKEN_API_SECRET"),
    ([], {"KRAKEN_API_KEY": "k", "KRAKEN_API_SECRET": "not base64!"}, "KRAKEN_API_SECRET: not base64"),
])
def test_serve_refuses_bad_options_in_one_line(argv: list[str], env: dict[str, str], message: str, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("KRAKEN_API_KEY", raising=False)
    monkeypatch.delenv("KRAKEN_API_SECRET", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["exchange", "serve", "--port", "0", *argv]) != 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in lines[0]
