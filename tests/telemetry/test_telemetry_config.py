"""The metrics, notifications and heartbeat sections: defaults, bounds, cross-checks, masked reprs."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from triplegain_fsm.config import Config, HeartbeatConfig, MetricsConfig, NotificationsConfig, mask_url
from triplegain_fsm.errors import ConfigError
from triplegain_fsm.telemetry.urls import expand, fail_url

pytestmark = pytest.mark.unit


def test_everything_is_off_by_default() -> None:
    c = Config()
    assert c.metrics == MetricsConfig(port=None)
    assert c.notifications == NotificationsConfig(urls=(), min_severity="high", timeout_seconds=10.0,
                                                  retry_base_seconds=5.0, retry_max_seconds=300.0)
    assert c.heartbeat == HeartbeatConfig(url=None, every_seconds=60.0, timeout_seconds=10.0)


def test_urls_are_a_list_kept_as_a_tuple() -> None:
    c = Config.from_dict({"notifications": {"urls": ["json://127.0.0.1:9/x", "tgram://${BOT}/1"]}})
    assert c.notifications.urls == ("json://127.0.0.1:9/x", "tgram://${BOT}/1")
    assert hash(c) == hash(Config.from_dict({"notifications": {"urls": ["json://127.0.0.1:9/x", "tgram://${BOT}/1"]}}))


@pytest.mark.parametrize(("data", "message"), [
    ({"metrics": {"port": 70000}}, "metrics.port: must be <= 65535, got 70000"),
    ({"metrics": {"port": "9100"}}, "metrics.port: must be a whole number"),
    ({"notifications": {"urls": "json://x"}}, "notifications.urls: must be a list, got 'json://x'"),
    ({"notifications": {"urls": [5]}}, r"notifications.urls\[0\]: must be a string"),
    ({"notifications": {"urls": ["just-a-token-123"]}}, r"notifications.urls\[0\]: must be an apprise URL"),
    ({"notifications": {"min_severity": "loud"}}, "notifications.min_severity: must be one of"),
    ({"notifications": {"timeout_seconds": 0}}, "notifications.timeout_seconds: must be > 0"),
    ({"notifications": {"retry_base_seconds": 10, "retry_max_seconds": 5}},
     "notifications.retry_max_seconds: must be >= retry_base_seconds"),
    ({"heartbeat": {"url": "ftp://example.org/x"}}, "heartbeat.url: must be an http"),
    ({"heartbeat": {"every_seconds": 0}}, "heartbeat.every_seconds: must be > 0"),
    ({"heartbeat": {"pingurl": "x"}}, "heartbeat.pingurl: unknown key"),
])
def test_bad_values_name_the_key(data, message) -> None:
    with pytest.raises(ConfigError, match=message):
        Config.from_dict(data)


def test_a_refused_url_is_not_echoed() -> None:
    with pytest.raises(ConfigError) as info:
        Config.from_dict({"notifications": {"urls": ["s3cr3t-t0ken-no-scheme"]}})
    assert "s3cr3t" not in str(info.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("tgram://123456:ABC-token/987", "tgram://***"),                 # the bot token is the "host"
    ("mailto://user:pass@gmail.com", "mailto://***"),
    ("json://127.0.0.1:8080/hook/s3cr3t", "json://127.0.0.1:8080/***"),
    ("https://hc-ping.com/0f1e2d3c-uuid", "https://hc-ping.com/***"),
    ("https://user:pw@example.org/x", "https://example.org/***"),
    ("json://127.0.0.1:${PORT}/x", "json://127.0.0.1/***"),
    (None, "None"),
])
def test_masking_keeps_no_secret(url, shown) -> None:
    assert mask_url(url) == shown


def test_reprs_are_masked() -> None:
    c = Config.from_dict({"notifications": {"urls": ["tgram://123456:ABC-token/987"]},
                          "heartbeat": {"url": "https://hc-ping.com/0f1e2d3c"}})
    text = repr(c)
    assert "ABC-token" not in text and "0f1e2d3c" not in text
    assert "urls=('tgram://***',)" in text and "url='https://hc-ping.com/***'" in text


def test_expand_and_fail_url() -> None:
    assert expand(" https://hc-ping.com/${CHECK} ", {"CHECK": "abc"}, "heartbeat.url") == "https://hc-ping.com/abc"
    with pytest.raises(ConfigError, match="heartbeat.url: environment variable CHECK is not set"):
        expand("https://hc-ping.com/${CHECK}", {"CHECK": ""}, "heartbeat.url")
    assert fail_url("https://hc-ping.com/abc/") == "https://hc-ping.com/abc/fail"
    assert fail_url("https://hc-ping.com/abc?rid=1") == "https://hc-ping.com/abc/fail?rid=1"


def test_the_readme_example_config_is_valid() -> None:
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    block = text.split("## Metrics, notifications, heartbeat", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    c = Config.from_dict(yaml.safe_load(block))
    assert c.metrics.port == 9464 and len(c.notifications.urls) == 2 and c.heartbeat.every_seconds == 60
