"""Loopback receivers for the telemetry tests: a real HTTP server in a thread (http.server).

`receiver` records every request (apprise's `json://` POSTs, the heartbeat's GETs) and
answers as told: 200, an error status, or not at all for a while (`hang_seconds`).
`prom.scrape(port)` reads a core's real /metrics endpoint and parses it with
prometheus_client's own parser; `wait_until` polls a condition another thread makes true.
"""
from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import attrs
import pytest
from prometheus_client.parser import text_string_to_metric_families


@attrs.define
class Received:
    method: str
    path: str
    body: Any
    status: int          # what the receiver answered


class Receiver:
    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.status = 200
        self.fail_first = 0          # answer `status_when_failing` to this many requests, then 200
        self.status_when_failing = 500
        self.hang_seconds = 0.0      # wait this long before answering (a hung service), or until release()
        self._released = threading.Event()
        self._cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                if receiver.hang_seconds:
                    receiver._released.wait(receiver.hang_seconds)
                with receiver._cond:
                    status = receiver.status
                    if receiver.fail_first > 0:
                        receiver.fail_first -= 1
                        status = receiver.status_when_failing
                    body = json.loads(raw) if raw else None
                    receiver.requests.append(Received(self.command, self.path, body, status))
                    receiver._cond.notify_all()
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"OK")
                except OSError:  # the client gave up waiting (its timeout): nothing to answer
                    pass

            do_GET = do_POST = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="test-receiver", daemon=True)
        self._thread.start()

    @property
    def json_url(self) -> str:
        return f"json://127.0.0.1:{self.port}/alerts"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ping/check-1"

    def release(self) -> None:
        """The hung service is back: requests waiting are answered now, new ones at once."""
        self.hang_seconds = 0.0
        self._released.set()

    def accepted(self) -> list[Received]:
        with self._cond:
            return [r for r in self.requests if r.status < 400]

    def wait_for(self, predicate: Callable[[Receiver], bool], timeout: float = 10.0) -> bool:
        """Block until `predicate(self)` holds after a request arrived, or the timeout passes."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _scrape(port: int | None) -> dict[str, Any]:
    """name -> family, from the real endpoint."""
    assert port is not None, "the /metrics server is not running"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        text = answer.read().decode()
    return {family.name: family for family in text_string_to_metric_families(text)}


def _samples(families: dict[str, Any], name: str, suffix: str = "") -> dict[tuple[tuple[str, str], ...], float]:
    """{sorted label items: value} of one family's samples named name+suffix."""
    family = families[name]
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if s.name == name + suffix}


def _by_label(families: dict[str, Any], name: str, label: str, suffix: str = "") -> dict[str, float]:
    return {dict(labels)[label]: value for labels, value in _samples(families, name, suffix).items()}


def _wait_until(predicate: Callable[[], bool], timeout: float = 10.0, step: float = 0.01) -> bool:
    """Poll a condition another thread makes true (a delivery thread's store write); bounded."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()


class Prom:
    """The scrape helpers, handed out by the `prom` fixture (test folders are not packages)."""

    scrape = staticmethod(_scrape)
    samples = staticmethod(_samples)
    by_label = staticmethod(_by_label)


@pytest.fixture
def prom() -> type[Prom]:
    return Prom


@pytest.fixture
def wait_until() -> Callable[..., bool]:
    return _wait_until
