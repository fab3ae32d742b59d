"""Config file: defaults, every problem with file/line/field, relative paths, env override."""

from __future__ import annotations

from pathlib import Path

import pytest
from mqttgate.proxy.config import ConfigError, load_config, split_host_port


def _files(folder: Path) -> None:
    for name in ("tls.crt", "tls.key", "ca.crt", "users.yaml"):
        (folder / name).write_text("x")


MINIMAL = """\
listeners:
  - name: mqtts
    bind: "0.0.0.0:8883"
    tls:
      cert_file: tls.crt
      key_file: tls.key
upstream:
  address: "127.0.0.1:1883"
policy:
  file: users.yaml
"""


def write(tmp_path: Path, text: str) -> Path:
    _files(tmp_path)
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_minimal_config_gets_documented_defaults(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    (lst,) = cfg.listeners
    assert (lst.name, lst.host, lst.port) == ("mqtts", "0.0.0.0", 8883)
    assert lst.tls.cert_file == tmp_path / "tls.crt"  # relative to the config's folder
    assert lst.tls.mutual_tls is False and lst.tls.min_version == "1.2"
    assert lst.proxy_protocol is False
    assert (cfg.upstream.host, cfg.upstream.port, cfg.upstream.connect_timeout) == (
        "127.0.0.1",
        1883,
        5,
    )
    assert cfg.policy.file == tmp_path / "users.yaml" and cfg.policy.reload == "watch"
    assert cfg.enforcement.denied_publish == "ack" and cfg.enforcement.client_id_namespace
    assert cfg.limits.max_packet_size == 1048576
    assert cfg.limits.connect_timeout == 10 and cfg.limits.max_connections == 10000
    assert cfg.limits.max_connections_per_user == 0
    assert cfg.metrics.bind == "127.0.0.1:9100" and cfg.metrics.per_user is False
    assert (cfg.log.level, cfg.log.format) == ("info", "json")
    assert cfg.shutdown_grace == 10 and cfg.workers == 1


def test_full_design_example_loads(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "      key_file: tls.key\n",
        "      key_file: tls.key\n      ca_file: ca.crt\n      mutual_tls: true\n"
        '      min_version: "1.3"\n'
        "    proxy_protocol: true\n",
    ) + (
        "enforcement:\n  denied_publish: disconnect\n  client_id_namespace: false\n"
        "limits:\n  max_packet_size: 4096\n  connect_timeout: 3\n  max_connections: 5\n"
        "  max_connections_per_user: 2\n"
        'metrics:\n  bind: "127.0.0.1:9999"\n  per_user: true\n'
        "log:\n  level: debug\n  format: text\n"
        "shutdown_grace: 2.5\nworkers: auto\n"
    )
    cfg = load_config(write(tmp_path, text))
    lst = cfg.listeners[0]
    assert lst.tls.mutual_tls and lst.tls.ca_file == tmp_path / "ca.crt"
    assert lst.tls.min_version == "1.3" and lst.proxy_protocol
    assert cfg.enforcement.denied_publish == "disconnect"
    assert not cfg.enforcement.client_id_namespace
    assert cfg.limits.max_packet_size == 4096 and cfg.limits.max_connections_per_user == 2
    assert cfg.metrics.per_user and cfg.log.format == "text"
    assert cfg.shutdown_grace == 2.5 and cfg.workers == "auto"


def test_embedded_upstream(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL.replace('"127.0.0.1:1883"', "embedded")))
    assert cfg.upstream.embedded


def test_every_problem_is_reported_with_line_and_field(tmp_path: Path) -> None:
    text = (
        MINIMAL.replace('bind: "0.0.0.0:8883"', "bind: nonsense")
        + "limits:\n  max_connections: -3\n  bogus: 1\nenforcement:\n  denied_publish: maybe\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    by_field = {p.field: p for p in info.value.problems}
    assert set(by_field) >= {
        "listeners[0].bind",
        "limits.max_connections",
        "limits.bogus",
        "enforcement.denied_publish",
    }
    assert by_field["listeners[0].bind"].line == 3
    assert by_field["limits.max_connections"].line == 12
    assert by_field["limits.bogus"].line == 13
    assert all(p.file == str(tmp_path / "config.yaml") for p in info.value.problems)
    assert "config.yaml:13: limits.bogus:" in str(by_field["limits.bogus"])


def test_unknown_top_level_key_and_missing_files(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "upstreams: {}\n")
    (tmp_path / "tls.key").unlink()
    with pytest.raises(ConfigError) as info:
        load_config(path)
    fields = {p.field for p in info.value.problems}
    assert "upstreams" in fields and "listeners[0].tls.key_file" in fields


def test_mutual_tls_needs_ca(tmp_path: Path) -> None:
    text = MINIMAL.replace(
        "      key_file: tls.key\n", "      key_file: tls.key\n      mutual_tls: true\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert [p.field for p in info.value.problems] == ["listeners[0].tls.ca_file"]


def test_env_overrides_mutual_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = MINIMAL.replace(
        "      key_file: tls.key\n", "      key_file: tls.key\n      ca_file: ca.crt\n"
    )
    path = write(tmp_path, text)
    monkeypatch.setenv("MQTTGATE_USE_MUTUAL_TLS", "yes")
    assert load_config(path).listeners[0].tls.mutual_tls is True
    monkeypatch.setenv("MQTTGATE_USE_MUTUAL_TLS", "no")
    assert load_config(path).listeners[0].tls.mutual_tls is False
    monkeypatch.setenv("MQTTGATE_USE_MUTUAL_TLS", "perhaps")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.problems[0].field == "MQTTGATE_USE_MUTUAL_TLS"


def test_yaml_syntax_error_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "listeners: [\n"))
    assert info.value.problems
    with pytest.raises(ConfigError):
        load_config(tmp_path / "absent.yaml")


def test_split_host_port() -> None:
    assert split_host_port("127.0.0.1:1883") == ("127.0.0.1", 1883)
    assert split_host_port("[::1]:8883") == ("::1", 8883)
    for bad in ("1883", "host:", "host:99999", ":1883"):
        with pytest.raises(ValueError):
            split_host_port(bad)


def test_auth_backoff_defaults_and_overrides(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, MINIMAL))
    b = cfg.limits.auth_backoff
    assert (b.threshold, b.base_delay, b.max_delay, b.window) == (5, 0.5, 30.0, 300.0)
    text = MINIMAL + "limits:\n  auth_backoff: {threshold: 2, base_delay: 0.05, max_delay: 1}\n"
    b = load_config(write(tmp_path, text)).limits.auth_backoff
    assert (b.threshold, b.base_delay, b.max_delay, b.window) == (2, 0.05, 1, 300.0)


def test_auth_backoff_problems_name_the_field(tmp_path: Path) -> None:
    text = MINIMAL + "limits:\n  auth_backoff:\n    threshold: 0\n    speed: 3\n"
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text))
    found = {(p.line, p.field) for p in err.value.problems}
    assert (13, "limits.auth_backoff.threshold") in found
    assert (14, "limits.auth_backoff.speed") in found
