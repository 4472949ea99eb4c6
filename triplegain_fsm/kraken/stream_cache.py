"""What the stream delivers: each execution report raw AND merged with what is known of its order.

Kraken's v2 execution reports are sparse: an order is described in full once (its
`pending_new` report, or the snapshot) and later reports carry only the ids, the new
status and what changed -- no `symbol`, usually no `cl_ord_id`. `OrderCache` keeps
the latest description of every live order by `order_id` and merges each report into
it, so a consumer always sees the whole order (`MergedReport.merged`) next to exactly
what this message said (`MergedReport.raw`).

Rules:
- Per-report fields (`REPORT_ONLY`: the trade's `exec_id`, `trade_id`, `last_qty`,
  `last_price`, `cost`, `fees`, `liquidity_ind`, and a cancel's `reason`) appear in the
  merged view of their own report only, never in the cache, so a later report can
  never look like a second fill.
- `triggers` is merged key by key (a report may send only its `status`).
- An order reaching a final `order_status` (filled, canceled, expired) leaves the
  cache: memory is bounded by the open orders. Unknown statuses and exec types are
  kept as strings and never crash anything; `MAX_ORDERS` caps the cache anyway.
- A snapshot replaces the whole cache (`clear()` first): it lists every open order in full.
- The views are read-only mappings; nested values (`triggers`, `fees`) are shared, not
  copied (a copy per report would double the cost): treat them as read-only too.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

log = logging.getLogger(__name__)

TRADE_FIELDS = frozenset({"exec_id", "trade_id", "last_qty", "last_price", "cost", "fees", "liquidity_ind"})
REPORT_ONLY = TRADE_FIELDS | {"reason"}
FINAL_STATUSES = frozenset({"filled", "canceled", "expired"})
NESTED = ("triggers",)
MAX_ORDERS = 10_000
SNAPSHOT, UPDATE = "snapshot", "update"
Report = Mapping[str, Any]


@attrs.frozen
class MergedReport:
    """One execution report: `raw` as the message carried it, `merged` = the order as known after it.

    Both are read-only mappings; numbers are Decimal (prices, sizes, fees) or int.
    """

    raw: Report
    merged: Report

    @property
    def order_id(self) -> str | None:
        value = self.raw.get("order_id")
        return value if isinstance(value, str) else None

    @property
    def exec_type(self) -> str | None:
        return self.raw.get("exec_type")

    @property
    def order_status(self) -> str | None:
        return self.merged.get("order_status")

    @property
    def is_trade(self) -> bool:
        """This report is a fill (count fills only from these, and dedupe on `trade_id`)."""
        return "exec_id" in self.raw or "trade_id" in self.raw

    @property
    def is_final(self) -> bool:
        return self.order_status in FINAL_STATUSES


@attrs.frozen
class StreamBatch:
    """One `executions` message: `kind` is "snapshot" or "update", `sequence` as Kraken numbered it."""

    kind: str
    reports: tuple[MergedReport, ...]
    sequence: int | None

    @property
    def is_snapshot(self) -> bool:
        return self.kind == SNAPSHOT


class OrderCache:
    """order_id -> the latest full description of a live order (used by the stream's thread only)."""

    def __init__(self, max_orders: int = MAX_ORDERS) -> None:
        self._orders: dict[str, dict[str, Any]] = {}
        self._max = max_orders

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def clear(self) -> None:
        self._orders.clear()

    def merge(self, report: Report) -> MergedReport:
        """Merge one report into its order; returns the report raw and merged."""
        order_id = report.get("order_id")
        if not isinstance(order_id, str):
            log.warning("execution report without an order_id (exec_type %r): delivered unmerged",
                        report.get("exec_type"))
            view = MappingProxyType(dict(report))
            return MergedReport(view, view)
        known = self._orders.pop(order_id, None) or {}
        merged = {**known, **report}
        for name in NESTED:
            old, new = known.get(name), report.get(name)
            if isinstance(old, Mapping) and isinstance(new, Mapping):
                merged[name] = {**old, **new}
        if merged.get("order_status") not in FINAL_STATUSES:
            kept = dict(merged)
            for name in REPORT_ONLY.intersection(report):
                del kept[name]
            self._orders[order_id] = kept
            self._bound()
        return MergedReport(MappingProxyType(report), MappingProxyType(merged))

    def _bound(self) -> None:
        while len(self._orders) > self._max:
            oldest = next(iter(self._orders))
            del self._orders[oldest]
            log.warning("order cache over %d orders: forgot %s (its later reports arrive unmerged)",
                        self._max, oldest)
