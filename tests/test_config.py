"""Config: defaults, the shipped files, and every way a bad file must fail loudly at start."""
from __future__ import annotations

import copy
import pickle
from decimal import Decimal
from pathlib import Path

import attrs
import pytest
import yaml

from triplegain_fsm.config import (
    AlertsConfig,
    Config,
    ExchangeConfig,
    LimitsConfig,
    OrdersConfig,
    PaperConfig,
    PositionsConfig,
    SafetyConfig,
    StorageConfig,
    SymbolConfig,
)
from triplegain_fsm.errors import ConfigError, ValidationError

pytestmark = pytest.mark.unit

CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"
SHIPPED = CONFIG_DIR / "execution.yaml"


def write(tmp_path: Path, text: str, name: str = "execution.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- defaults


def test_defaults_match_the_documented_contract() -> None:
    c = Config()
    assert c == Config.default()
    assert c.exchange == ExchangeConfig(mode="paper", base_url="https://api.kraken.com", tier="starter",
                                        timeout_seconds=10.0, account="spot", key_file=None,
                                        submit_deadline_seconds=5, user_agent="triplegain-fsm/0.1")
    assert c.storage.path == "triplegain.sqlite"
    assert set(c.symbols) == {"BTC/USD", "ETH/USD"}
    assert c.symbols["BTC/USD"] == SymbolConfig(fee_pct=Decimal("0.26"), maker_fee_pct=Decimal("0.16"),
                                                max_leverage=1, enabled=True)
    assert (c.limits.max_open_positions, c.limits.max_positions_per_symbol, c.limits.max_order_usd) == (5, 2, None)
    assert c.orders == OrdersConfig(poll_interval_seconds=5.0, poll_workers=4, query_batch_size=20,
                                    history_size=1000, price_max_age_seconds=10.0)
    assert c.positions.stop_loss_order_type == "stop-loss"
    assert c.positions.take_profit_order_type == "take-profit"
    assert c.positions.trailing_activation_pct == Decimal("1.0")
    assert c.positions.trailing_distance_pct == Decimal("1.5")
    assert c.positions.close_unprotected_after_seconds is None
    assert c.alerts == AlertsConfig(log_level="WARNING", repeat_after_seconds=300.0, persist=True)
    assert c.safety.dead_mans_switch_seconds == 0
    assert c.paper.balances == {"ZUSD": Decimal("100000")}
    assert c.paper.prices == {"BTC/USD": Decimal("43000"), "ETH/USD": Decimal("2300")}


def test_money_fields_are_decimal_and_durations_are_float() -> None:
    c = Config()
    assert type(c.symbols["BTC/USD"].fee_pct) is Decimal
    assert type(c.positions.limit_slippage_pct) is Decimal
    assert all(type(v) is Decimal for v in c.paper.balances.values())
    assert type(c.orders.poll_interval_seconds) is float


def test_unlisted_symbol_gets_default_settings() -> None:
    c = Config.from_dict({"symbols": {"BTC/USD": {"fee_pct": "0.1", "maker_fee_pct": "0"}}})
    assert c.symbol("BTC/USD").fee_pct == Decimal("0.1")
    assert c.symbol("SOL/USD") == SymbolConfig()
    assert c.symbol("ETH/USD") == SymbolConfig()  # listing symbols replaces the map


@pytest.mark.parametrize("text", ["", "# only a comment\n", "{}\n", "~\n"])
def test_empty_file_gives_defaults(tmp_path: Path, text: str) -> None:
    c = Config.load(write(tmp_path, text))
    assert attrs.evolve(c, storage=StorageConfig()) == Config()
    assert Config.from_dict({}) == Config.from_dict(None) == Config()


# --------------------------------------------------------------------------- shipped files


def test_shipped_execution_yaml_loads_and_equals_the_defaults() -> None:
    c = Config.load(SHIPPED)
    assert c.exchange.mode == "paper"
    assert c.storage.path == str(CONFIG_DIR / "triplegain.sqlite")
    assert attrs.evolve(c, storage=StorageConfig()) == Config.default()


def test_shipped_execution_yaml_spells_out_every_setting() -> None:
    """Documentation completeness: a new setting must be added to the reference file."""
    data = yaml.safe_load(SHIPPED.read_text())
    defaults = Config()
    assert set(data) == {f.name for f in attrs.fields(Config)}
    for name in data:
        if name == "symbols":
            for symbol in data["symbols"].values():
                assert set(symbol) == {f.name for f in attrs.fields(SymbolConfig)}
        else:
            assert set(data[name]) == {f.name for f in attrs.fields(type(getattr(defaults, name)))}, name


def test_shipped_paper_yaml_loads() -> None:
    c = Config.load(CONFIG_DIR / "paper.yaml")
    assert c.exchange.mode == "paper"
    assert c.paper.liquidity_per_tick == Decimal("0.05")
    assert c.paper.balances["XXBT"] == Decimal("0.5")


# --------------------------------------------------------------------------- decimals


def test_yaml_decimal_is_exact(tmp_path: Path) -> None:
    c = Config.load(write(tmp_path, "symbols:\n  BTC/USD:\n    fee_pct: 0.26\n    maker_fee_pct: 0.1\n"))
    fee = c.symbol("BTC/USD").fee_pct
    assert fee == Decimal("0.26")
    assert str(fee) == "0.26"
    assert fee != Decimal(0.26)  # what a float round-trip would have produced


@pytest.mark.parametrize("raw", ["0.26", 0.26, Decimal("0.26"), " 0.26 "])
def test_from_dict_accepts_decimal_str_and_float_literal(raw: object) -> None:
    c = Config.from_dict({"symbols": {"BTC/USD": {"fee_pct": raw}}})
    assert str(c.symbol("BTC/USD").fee_pct) == "0.26"


def test_yaml_numbers_in_duration_fields_become_floats(tmp_path: Path) -> None:
    c = Config.load(write(tmp_path, "orders:\n  poll_interval_seconds: 2\n  price_max_age_seconds: 0.5\n"))
    assert c.orders.poll_interval_seconds == 2.0 and type(c.orders.poll_interval_seconds) is float
    assert c.orders.price_max_age_seconds == 0.5


def test_yaml_exponent_and_underscores(tmp_path: Path) -> None:
    c = Config.load(write(tmp_path, "limits:\n  max_order_usd: 2.5e3\npaper:\n  balances:\n    ZUSD: 1_000.50\n"))
    assert c.limits.max_order_usd == Decimal("2500")
    assert c.paper.balances["ZUSD"] == Decimal("1000.50")


# --------------------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(("data", "expected"), [
    ({"order": {}}, "order: unknown key"),
    ({"orders": {"poll_intervall": 1}}, "orders.poll_intervall: unknown key"),
    ({"symbols": {"BTC/USD": {"fee": "0.1"}}}, "symbols.BTC/USD.fee: unknown key"),
    ({"paper": {"balance": {}}}, "paper.balance: unknown key"),
])
def test_unknown_key_names_its_full_path(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict(data)
    assert str(info.value).startswith(expected)


def test_unknown_key_suggests_the_close_one() -> None:
    with pytest.raises(ConfigError, match="did you mean 'poll_interval_seconds'"):
        Config.from_dict({"orders": {"poll_intervall": 1}})


def test_unknown_key_in_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^safety\.dead_man_switch: unknown key"):
        Config.load(write(tmp_path, "safety:\n  dead_man_switch: 60\n"))


# --------------------------------------------------------------------------- bad values


@pytest.mark.parametrize(("data", "expected"), [
    ({"orders": {"poll_interval_seconds": -1}}, "orders.poll_interval_seconds: must be > 0, got -1"),
    ({"orders": {"poll_interval_seconds": "fast"}}, "orders.poll_interval_seconds: must be a number, got 'fast'"),
    ({"orders": {"query_batch_size": 21}}, "orders.query_batch_size: must be <= 20, got 21"),
    ({"orders": {"query_batch_size": 0}}, "orders.query_batch_size: must be >= 1, got 0"),
    ({"orders": {"poll_workers": 2.5}}, "orders.poll_workers: must be a whole number"),
    ({"alerts": {"persist": "yes please"}}, "alerts.persist: must be true or false"),
    ({"limits": {"max_open_positions": True}}, "limits.max_open_positions: must be a whole number"),
    ({"limits": {"max_order_usd": 0}}, "limits.max_order_usd: must be > 0, got 0"),
    ({"exchange": {"mode": "real"}}, "exchange.mode: must be one of 'paper', 'live', got 'real'"),
    ({"exchange": {"tier": "gold"}}, "exchange.tier: must be one of"),
    ({"exchange": {"account": "futures"}}, "exchange.account: must be one of"),
    ({"exchange": {"submit_deadline_seconds": 1}}, "exchange.submit_deadline_seconds: must be >= 2, got 1"),
    ({"exchange": {"submit_deadline_seconds": 61}}, "exchange.submit_deadline_seconds: must be <= 60, got 61"),
    ({"exchange": {"timeout_seconds": 0}}, "exchange.timeout_seconds: must be > 0"),
    ({"exchange": {"base_url": "ftp://api.kraken.com"}}, "exchange.base_url: must be an http(s) URL"),
    ({"exchange": {"base_url": 42}}, "exchange.base_url: must be a string"),
    ({"exchange": {"key_file": ""}}, "exchange.key_file: must be a path or null"),
    ({"storage": {"path": " "}}, "storage.path: must not be empty"),
    ({"symbols": {"BTC/USD": {"fee_pct": "abc"}}}, "symbols.BTC/USD.fee_pct: must be a number, got 'abc'"),
    ({"symbols": {"BTC/USD": {"fee_pct": 26}}}, "symbols.BTC/USD.fee_pct: must be <= 2, got 26"),
    ({"symbols": {"BTC/USD": {"maker_fee_pct": -0.1}}}, "symbols.BTC/USD.maker_fee_pct: must be >= 0, got -0.1"),
    ({"symbols": {"BTC/USD": {"max_leverage": 6}}}, "symbols.BTC/USD.max_leverage: must be <= 5, got 6"),
    ({"symbols": {"BTCUSD": {}}}, "symbols.BTCUSD: not a valid name here"),
    ({"symbols": {"BTC/USD": "cheap"}}, "symbols.BTC/USD: must be a mapping of settings"),
    ({"symbols": ["BTC/USD"]}, "symbols: must be a mapping"),
    ({"positions": {"stop_loss_order_type": "stop"}}, "positions.stop_loss_order_type: must be one of"),
    ({"positions": {"trailing_distance_pct": 0}}, "positions.trailing_distance_pct: must be > 0, got 0"),
    ({"positions": {"trailing_activation_pct": 150}}, "positions.trailing_activation_pct: must be <= 100"),
    ({"positions": {"limit_slippage_pct": "Infinity"}}, "positions.limit_slippage_pct: must be a finite number"),
    ({"positions": {"close_unprotected_after_seconds": 0}}, "positions.close_unprotected_after_seconds: must be > 0"),
    ({"alerts": {"log_level": "LOUD"}}, "alerts.log_level: must be one of"),
    ({"alerts": {"repeat_after_seconds": -5}}, "alerts.repeat_after_seconds: must be >= 0, got -5"),
    ({"safety": {"circuit_failure_threshold": 0}}, "safety.circuit_failure_threshold: must be >= 1, got 0"),
    ({"safety": {"dead_mans_switch_seconds": 5}}, "safety.dead_mans_switch_seconds: must be 0 (off) or between 10"),
    ({"safety": {"dead_mans_switch_seconds": 86401}}, "safety.dead_mans_switch_seconds: must be <= 86400"),
    ({"paper": {"balances": {"ZUSD": -1}}}, "paper.balances.ZUSD: must be >= 0, got -1"),
    ({"paper": {"balances": {"usd": 1}}}, "paper.balances.usd: not a valid name here"),
    ({"paper": {"prices": {"BTC/USD": 0}}}, "paper.prices.BTC/USD: must be > 0, got 0"),
    ({"paper": {"fill_latency_ticks": -1}}, "paper.fill_latency_ticks: must be >= 0, got -1"),
    ({"orders": 5}, "orders: must be a mapping of settings, got 5"),
])
def test_bad_value_names_its_key(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict(data)
    assert str(info.value).startswith(expected), str(info.value)


def test_config_error_is_a_validation_error() -> None:
    with pytest.raises(ValidationError):
        Config.from_dict({"orders": {"poll_workers": 0}})


def test_yaml_infinity_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^orders\.poll_interval_seconds: must be a finite number"):
        Config.load(write(tmp_path, "orders:\n  poll_interval_seconds: .inf\n"))


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"^poll_interval_seconds: must be > 0"):
        OrdersConfig(poll_interval_seconds=-1)
    with pytest.raises(ConfigError, match=r"^orders\.poll_interval_seconds: must be > 0"):
        Config(orders={"poll_interval_seconds": -1})  # type: ignore[arg-type]
    assert SymbolConfig(fee_pct="0.3").fee_pct == Decimal("0.3")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- cross-checks


def test_dead_mans_switch_refresh_must_beat_the_timeout() -> None:
    with pytest.raises(ConfigError, match=r"^safety\.dead_mans_switch_refresh_seconds: must be < "
                                          r"dead_mans_switch_seconds \(60\), got 60"):
        Config.from_dict({"safety": {"dead_mans_switch_seconds": 60, "dead_mans_switch_refresh_seconds": 60}})
    ok = Config.from_dict({"safety": {"dead_mans_switch_seconds": 60, "dead_mans_switch_refresh_seconds": 20}})
    assert ok.safety.dead_mans_switch_seconds == 60
    # off: the refresh interval is not compared
    assert Config.from_dict({"safety": {"dead_mans_switch_refresh_seconds": 500}}).safety.dead_mans_switch_seconds == 0


def test_per_symbol_limit_cannot_exceed_total() -> None:
    with pytest.raises(ConfigError, match=r"^limits\.max_positions_per_symbol: must be <= max_open_positions \(3\)"):
        Config.from_dict({"limits": {"max_open_positions": 3, "max_positions_per_symbol": 4}})


def test_maker_fee_above_taker_fee_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^symbols\.BTC/USD\.maker_fee_pct: must be <= fee_pct"):
        Config.from_dict({"symbols": {"BTC/USD": {"fee_pct": "0.16", "maker_fee_pct": "0.26"}}})


def test_leverage_needs_a_margin_account() -> None:
    with pytest.raises(ConfigError, match=r"^symbols\.ETH/USD\.max_leverage: 3 needs exchange\.account: margin"):
        Config.from_dict({"symbols": {"ETH/USD": {"max_leverage": 3}}})
    c = Config.from_dict({"exchange": {"account": "margin"}, "symbols": {"ETH/USD": {"max_leverage": 3}}})
    assert c.symbol("ETH/USD").max_leverage == 3


def test_protection_retry_max_not_below_base() -> None:
    with pytest.raises(ConfigError, match=r"^positions\.protection_retry_max_seconds: must be >="):
        Config.from_dict({"positions": {"protection_retry_base_seconds": 30, "protection_retry_max_seconds": 10}})


def test_live_mode_refuses_plain_http_except_loopback() -> None:
    with pytest.raises(ConfigError, match=r"^exchange\.base_url: live mode .* use https"):
        Config.from_dict({"exchange": {"mode": "live", "base_url": "http://kraken.example"}})
    c = Config.from_dict({"exchange": {"mode": "live", "base_url": "http://127.0.0.1:8080/"}})
    assert c.exchange.base_url == "http://127.0.0.1:8080"  # trailing slash dropped
    assert Config.from_dict({"exchange": {"base_url": "http://paper.example"}}).exchange.mode == "paper"


def test_base_url_with_a_password_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"exchange": {"base_url": "https://me:hunter2@api.kraken.com"}})
    assert "hunter2" not in str(info.value)


# --------------------------------------------------------------------------- secrets


@pytest.mark.parametrize(("data", "where"), [
    ({"exchange": {"api_key": "AAAA"}}, "exchange.api_key"),
    ({"exchange": {"api_secret": "c2VjcmV0"}}, "exchange.api_secret"),
    ({"secret": "c2VjcmV0"}, "secret"),
    ({"kraken": {"credentials": {"key": "AAAA"}}}, "kraken.credentials.key"),
    ({"exchange": {"API-KEY": "AAAA"}}, "exchange.API-KEY"),
    ({"symbols": {"BTC/USD": {"Secret": "c2VjcmV0"}}}, "symbols.BTC/USD.Secret"),
])
def test_secrets_in_config_are_refused_and_not_echoed(data: dict, where: str) -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict(data)
    message = str(info.value)
    assert message.startswith(f"{where}: secrets do not belong in the config file")
    assert "KRAKEN_API_KEY" in message and "exchange.key_file" in message
    assert "AAAA" not in message and "c2VjcmV0" not in message


def test_secret_in_yaml_file_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "exchange:\n  mode: live\n  api_secret: kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76s=\n")
    with pytest.raises(ConfigError) as info:
        Config.load(path)
    assert str(info.value).startswith("exchange.api_secret: secrets do not belong")
    assert "kQH5" not in str(info.value)


# --------------------------------------------------------------------------- immutability


def test_config_is_frozen() -> None:
    c = Config()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        c.orders = OrdersConfig()  # type: ignore[misc]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        c.orders.poll_interval_seconds = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.symbols["SOL/USD"] = SymbolConfig()  # type: ignore[index]
    with pytest.raises(TypeError):
        c.paper.balances.update({"XXBT": Decimal(1)})  # type: ignore[attr-defined]
    assert attrs.evolve(c.orders, poll_interval_seconds=1).poll_interval_seconds == 1.0


def test_config_pickles_copies_and_hashes() -> None:
    c = Config.from_dict({"paper": {"balances": {"ZUSD": 5}}})
    assert pickle.loads(pickle.dumps(c)) == c
    assert copy.deepcopy(c) == c
    assert hash(copy.deepcopy(c)) == hash(c)
    assert isinstance(c.symbols, dict)


@pytest.mark.parametrize("cls", [ExchangeConfig, StorageConfig, SymbolConfig, LimitsConfig, OrdersConfig,
                                 PositionsConfig, AlertsConfig, SafetyConfig, PaperConfig, Config])
def test_every_section_builds_with_no_arguments(cls: type) -> None:
    assert cls() == cls()


# --------------------------------------------------------------------------- files and paths


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    c = Config.load(write(sub, "storage:\n  path: data/tg.sqlite\nexchange:\n  key_file: kraken.key\n"))
    assert c.storage.path == str(sub / "data" / "tg.sqlite")
    assert c.exchange.key_file == str(sub / "kraken.key")


def test_absolute_and_memory_paths_are_kept(tmp_path: Path) -> None:
    c = Config.from_dict({"storage": {"path": "/var/lib/tg.sqlite"}}, base_dir=tmp_path)
    assert c.storage.path == "/var/lib/tg.sqlite"
    assert Config.from_dict({"storage": {"path": ":memory:"}}, base_dir=tmp_path).storage.path == ":memory:"
    assert Config.from_dict({"storage": {"path": "x.sqlite"}}).storage.path == "x.sqlite"  # no base_dir


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        Config.load(tmp_path / "nope.yaml")


def test_duplicate_key_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "orders:\n  poll_interval_seconds: 5\n  poll_interval_seconds: 1\n")
    with pytest.raises(ConfigError, match=r"line 3: duplicate key 'poll_interval_seconds'"):
        Config.load(path)


def test_yaml_syntax_error_names_the_line_but_not_the_text(tmp_path: Path) -> None:
    path = write(tmp_path, "exchange:\n  mode: paper\n  user_agent: [unclosed TOPSECRETVALUE\n")
    with pytest.raises(ConfigError) as info:
        Config.load(path)
    assert "invalid YAML" in str(info.value) and "line" in str(info.value)
    assert "TOPSECRETVALUE" not in str(info.value)


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n", "42\n"])
def test_top_level_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        Config.load(write(tmp_path, text))


def test_yaml_objects_are_not_constructed(tmp_path: Path) -> None:
    path = write(tmp_path, "storage: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        Config.load(path)
