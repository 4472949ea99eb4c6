"""Every class of REST fault the fault matrix knows, queued on the paper exchange by name.

`REST_FAULTS[name](faults, method, times)` queues one; a storm is the same fault for
several calls in a row (`times`), or for any method (`"*"`). `DURING` faults are the
world moving while a true answer travels: a price tick lands inside the call.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from triplegain_fsm.paper import Faults

METHODS = ("AddOrder", "QueryOrders", "CancelOrder", "AmendOrder", "OpenOrders", "ClosedOrders", "OpenPositions",
           "GetWebSocketsToken", "*")


def _entries(result: Any) -> list[dict[str, Any]]:
    return [v for v in result.values() if isinstance(v, dict)] if isinstance(result, dict) else []


def fields_missing(method: str) -> Callable[[dict[str, Any]], None]:
    """The real answer with the fields a client needs taken out."""

    def mutate(payload: dict[str, Any]) -> None:
        result = payload.get("result")
        if not isinstance(result, dict):
            return
        if method == "AddOrder":
            result.pop("txid", None)
        elif method == "QueryOrders":
            for info in _entries(result):
                info.pop("vol_exec", None)
                info.pop("cost", None)
        elif method in ("OpenOrders", "ClosedOrders"):
            for info in _entries(result.get("open" if method == "OpenOrders" else "closed")):
                info.pop("cl_ord_id", None)
                info.pop("status", None)
        elif method == "OpenPositions":
            for row in _entries(result):
                row.pop("vol", None)
                row.pop("type", None)
        else:
            result.clear()

    return mutate


def wrong_types(method: str) -> Callable[[dict[str, Any]], None]:
    """The real answer with fields of the wrong JSON type."""

    def mutate(payload: dict[str, Any]) -> None:
        result = payload.get("result")
        if not isinstance(result, dict):
            return
        if method == "AddOrder":
            result["txid"] = 12345
        elif method == "QueryOrders":
            for info in _entries(result):
                info["vol_exec"] = ["0.1"]
                info["status"] = 7
        elif method == "OpenOrders":
            result["open"] = ["not", "a", "map"]
        elif method == "ClosedOrders":
            result["closed"] = "nothing"
            result["count"] = "many"
        elif method == "OpenPositions":
            for row in _entries(result):
                row["vol"] = {"v": 1}
                row["vol_closed"] = None
        else:
            result["amend_id"] = {"id": 1}

    return mutate


Queue = Callable[[Faults, str, int], Any]
REST_FAULTS: dict[str, Queue] = {
    "timeout_before_send": lambda f, m, n: f.timeout_before_next(m, times=n),
    "response_lost_after_acting": lambda f, m, n: f.lose_next_response(m, times=n),
    "http500": lambda f, m, n: f.http_status_next(m, 500, times=n),
    "http500_acted": lambda f, m, n: f.http_status_next(m, 500, acted=True, times=n),
    "http502": lambda f, m, n: f.http_status_next(m, 502, times=n),
    "http502_acted": lambda f, m, n: f.http_status_next(m, 502, acted=True, times=n),
    "http520": lambda f, m, n: f.http_status_next(m, 520, times=n),
    "http520_acted": lambda f, m, n: f.http_status_next(m, 520, acted=True, times=n),
    "EService:Unavailable": lambda f, m, n: f.fail_next(m, "EService:Unavailable", times=n),
    "EService:Busy": lambda f, m, n: f.fail_next(m, "EService:Busy", times=n),
    "EAPI:Rate limit exceeded": lambda f, m, n: f.fail_next(m, "EAPI:Rate limit exceeded", times=n),
    "EOrder:Rate limit exceeded": lambda f, m, n: f.fail_next(m, "EOrder:Rate limit exceeded", times=n),
    "EAPI:Invalid nonce": lambda f, m, n: f.fail_next(m, "EAPI:Invalid nonce", times=n),
    "malformed_json": lambda f, m, n: f.malformed_next(m, times=n),
    "malformed_json_acted": lambda f, m, n: f.malformed_next(m, acted=True, times=n),
    "result_fields_missing": lambda f, m, n: f.corrupt_result_next(m, fields_missing(m), times=n),
    "result_wrong_types": lambda f, m, n: f.corrupt_result_next(m, wrong_types(m), times=n),
}
DURING_CALL = "fill_during_call"    # a price tick inside the call's round trip (queued by the runner)
FAULT_CLASSES = (*REST_FAULTS, DURING_CALL)
