"""A bot process for the notification crash test: raises a critical alert and dies, or delivers what is left.

    python tests/telemetry/alerting_bot.py --store PATH --url json://127.0.0.1:PORT/alerts --mode raise
    python tests/telemetry/alerting_bot.py --store PATH --url json://127.0.0.1:PORT/alerts --mode deliver

raise    a paper core with notifications on is started (its delivery thread runs), then the
         exchange fails once and the circuit breaker opens: the critical `circuit_open` alert is
         committed, with its outbox row, and this process dies with `os._exit(137)` in the first
         subscriber of `risk_alerts` -- before the delivery thread hears of the alert. No finally,
         no atexit, no flush: as if the power went.
deliver  a fresh process on the same store starts the core and waits (at most 10 s) until the outbox
         holds nothing undelivered; prints {"undelivered": N} and closes. Exit 0.

Exit codes: 137 killed after the alert; 3 the alert never came; 0 done.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from triplegain_fsm.bus import RISK_ALERTS, Message, MessageBus
from triplegain_fsm.core import ExecutionCore
from triplegain_fsm.kraken.errors import ServiceUnavailable
from triplegain_fsm.testing import paper_config

KILLED = 137
NOT_REACHED = 3


def die_on_circuit_open(message: Message) -> None:
    if message.payload.get("alert_type") == "circuit_open":
        sys.stderr.write("alerting_bot: killed right after the alert's commit\n")
        sys.stderr.flush()
        os._exit(KILLED)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True, type=Path)
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=("raise", "deliver"), required=True)
    args = parser.parse_args()
    config = paper_config(args.store, safety={"circuit_failure_threshold": 1},
                          notifications={"urls": [args.url], "timeout_seconds": 2, "retry_base_seconds": 0.05,
                                         "retry_max_seconds": 0.2},
                          orders={"poll_interval_seconds": 0.05})
    bus = MessageBus()
    if args.mode == "raise":
        bus.subscribe(RISK_ALERTS, die_on_circuit_open)   # first subscriber: runs before the notifier's wake-up
    core = ExecutionCore.from_settings(config, bus=bus)
    core.start()
    if args.mode == "raise":
        core.circuit.record_failure(ServiceUnavailable("EService:Unavailable", endpoint="QueryOrders"))
        return NOT_REACHED
    deadline = time.monotonic() + 10
    while core.store.undelivered_notifications() and time.monotonic() < deadline:
        time.sleep(0.02)
    print(json.dumps({"undelivered": len(core.store.undelivered_notifications())}))
    core.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
