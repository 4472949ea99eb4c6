"""More ways a config must fail loudly (or load) at start: odd keys and values, URLs, YAML merge keys,
unhashable keys, files that are not text, and secrets hidden inside lists."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from triplegain_fsm.config import Config
from triplegain_fsm.errors import ConfigError

pytestmark = pytest.mark.unit


def write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "execution.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(("data", "expected"), [
    ({"exchange": {1: "paper"}}, "exchange.1: keys must be strings"),
    ({7: {}}, "7: keys must be strings"),
    ({"paper": {"balances": {1: 100}}}, "paper.balances.1: keys must be strings"),
    ({"limits": {"max_order_usd": True}}, "limits.max_order_usd: must be a number, got True"),
    ({"limits": {"max_order_usd": [100]}}, "limits.max_order_usd: must be a number, got a list"),
    ({"orders": {"poll_interval_seconds": {"every": 5}}}, "orders.poll_interval_seconds: must be a number, got a dict"),
    ({"exchange": {"base_url": "https://api.kraken.com/?debug=1"}}, "exchange.base_url: must not carry a query"),
    ({"exchange": {"base_url": "https://api.kraken.com/#top"}}, "exchange.base_url: must not carry a query"),
    ({"exchange": {"user_agent": "   "}}, "exchange.user_agent: must not be empty"),
])
def test_more_bad_values_name_their_key(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict(data)
    assert str(info.value).startswith(expected), str(info.value)


@pytest.mark.parametrize(("data", "where"), [
    ({"paper": {"balances": [{"api_secret": "c2VjcmV0"}]}}, "paper.balances[0].api_secret"),
    ({"symbols": {"BTC/USD": {"notes": ["fine", {"nested": [{"password": "AAAA"}]}]}}},
     "symbols.BTC/USD.notes[1].nested[0].password"),
])
def test_a_secret_inside_a_list_is_found_and_not_echoed(data: dict, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict(data)
    message = str(info.value)
    assert message.startswith(f"{where}: secrets do not belong in the config file")
    assert "c2VjcmV0" not in message and "AAAA" not in message


def test_lists_without_secrets_fail_on_their_type_instead() -> None:
    with pytest.raises(ConfigError, match=r"^paper\.balances: must be a mapping, got a list"):
        Config.from_dict({"paper": {"balances": [{"ZUSD": 5}, ["nested"]]}})


def test_yaml_merge_keys_are_allowed(tmp_path: Path) -> None:
    text = (
        "symbols:\n"
        "  BTC/USD: &fees\n"
        "    fee_pct: 0.3\n"
        "    maker_fee_pct: 0.2\n"
        "  ETH/USD:\n"
        "    <<: *fees\n"
        "    max_leverage: 1\n")
    config = Config.load(write(tmp_path, text))
    assert config.symbol("ETH/USD").fee_pct == Decimal("0.3")
    assert config.symbol("ETH/USD").maker_fee_pct == Decimal("0.2")


def test_an_unhashable_yaml_key_is_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid YAML: line 2, column 5: found unhashable key"):
        Config.load(write(tmp_path, "paper:\n  ? [a, b]\n  : 1\n"))


def test_a_file_that_is_not_utf8_text(tmp_path: Path) -> None:
    path = write(tmp_path, b"exchange:\n  mode: \xff\xfe paper\n")
    with pytest.raises(ConfigError, match=r"config file is not UTF-8 text$"):
        Config.load(path)


def test_read_only_maps_show_what_they_hold() -> None:
    balances = Config.from_dict({"paper": {"balances": {"ZUSD": "5"}}}).paper.balances
    assert repr(balances) == "FrozenDict({'ZUSD': Decimal('5')})"
    with pytest.raises(TypeError, match="read-only"):
        balances["ZUSD"] = Decimal(6)   # type: ignore[index]
