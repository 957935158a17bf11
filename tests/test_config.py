"""Settings: defaults < the TOML file < the environment < the command line; config/default.toml cannot drift."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fieldcomms.__main__ import _settings, parser
from fieldcomms.config import SettingError, Settings, default_toml, load_settings

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TOML = REPO / "config" / "default.toml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "fieldcomms.toml"
    path.write_text(text)
    return path


def test_defaults_without_any_source() -> None:
    assert load_settings(None, env={}) == Settings()


def test_file_then_env_then_command_line(tmp_path: Path) -> None:
    toml = write(tmp_path, 'port = 9001\nhost = "0.0.0.0"\ndata_dir = "/from/file"\nmax_text_chars = 500\n')
    from_file = load_settings(toml, env={})
    assert (from_file.port, from_file.host, from_file.data_dir, from_file.max_text_chars) == (
        9001, "0.0.0.0", "/from/file", 500)

    env = {"FIELDCOMMS_PORT": "9002", "FIELDCOMMS_DATA_DIR": "/from/env"}
    from_env = load_settings(toml, env=env)
    assert (from_env.port, from_env.host, from_env.data_dir, from_env.max_text_chars) == (
        9002, "0.0.0.0", "/from/env", 500)

    from_cli = load_settings(toml, env=env, overrides={"port": 9003, "host": None})
    assert (from_cli.port, from_cli.host, from_cli.data_dir) == (9003, "0.0.0.0", "/from/env")  # None: not given


def test_the_config_file_can_come_from_the_environment(tmp_path: Path) -> None:
    toml = write(tmp_path, "port = 9100\n")
    assert load_settings(None, env={"FIELDCOMMS_CONFIG": str(toml)}).port == 9100


def test_environment_values_are_typed() -> None:
    got = load_settings(None, env={"FIELDCOMMS_FSYNC": "false", "FIELDCOMMS_STALE_AFTER_MINUTES": "2.5",
                                   "FIELDCOMMS_TRUSTED_PROXIES": "10.0.0.1, 10.0.0.2",
                                   "FIELDCOMMS_DEMO_ADMIN": "0", "FIELDCOMMS_PORT": "81"})
    assert got.fsync is False and got.demo_admin is False
    assert got.stale_after_minutes == 2.5 and got.port == 81
    assert got.trusted_proxies == ["10.0.0.1", "10.0.0.2"]


@pytest.mark.parametrize(("env", "words"), [
    ({"FIELDCOMMS_PORT": "eighty"}, ["port", "FIELDCOMMS_PORT", "eighty"]),
    ({"FIELDCOMMS_FSYNC": "maybe"}, ["fsync", "maybe"]),
])
def test_a_bad_environment_value_is_a_clear_error(env: dict[str, str], words: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        load_settings(None, env=env)
    assert all(w in str(exc.value) for w in words)


def test_an_unknown_key_in_the_file_is_a_clear_error(tmp_path: Path) -> None:
    toml = write(tmp_path, "port = 9001\nprot = 9002\n")
    with pytest.raises(SystemExit) as exc:
        load_settings(toml, env={})
    message = str(exc.value)
    assert "prot" in message and "unknown" in message and str(toml) in message


def test_a_wrongly_typed_value_in_the_file_is_a_clear_error(tmp_path: Path) -> None:
    toml = write(tmp_path, 'port = "high"\n')
    with pytest.raises(SystemExit) as exc:
        load_settings(toml, env={})
    assert "port" in str(exc.value) and "high" in str(exc.value)


def test_invalid_toml_and_a_missing_file_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="not valid TOML"):
        load_settings(write(tmp_path, "port = = 1\n"), env={})
    with pytest.raises(SystemExit, match="cannot read config file"):
        load_settings(tmp_path / "missing.toml", env={})


def test_default_toml_is_generated_from_the_declarations() -> None:
    assert DEFAULT_TOML.read_text() == default_toml(), "regenerate config/default.toml from default_toml()"


def test_default_toml_loads_to_the_defaults() -> None:
    assert load_settings(DEFAULT_TOML, env={}) == Settings()


def test_every_setting_has_help_and_an_environment_name() -> None:
    for f in dataclasses.fields(Settings):
        assert f.metadata.get("help"), f.name
        assert f"# {f.metadata['help']}\n{f.name} = " in default_toml()


def test_the_command_line_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = write(tmp_path, 'port = 9001\ndata_dir = "/from/file"\nhost = "10.0.0.9"\n')
    monkeypatch.setenv("FIELDCOMMS_PORT", "9002")
    monkeypatch.setenv("FIELDCOMMS_DATA_DIR", "/from/env")
    args = parser().parse_args(["serve", "--config", str(toml), "--port", "9003"])
    got = _settings(args, host=args.host, port=args.port)
    assert (got.port, got.data_dir, got.host) == (9003, "/from/env", "10.0.0.9")
    args = parser().parse_args(["serve", "--config", str(toml), "--data-dir", "/from/cli"])
    got = _settings(args, host=args.host, port=args.port)
    assert (got.port, got.data_dir) == (9002, "/from/cli")


# ---- range and meaning, checked when loaded (issue 15) --------------------------------------------------------


@pytest.mark.parametrize(("env", "words"), [
    ({"FIELDCOMMS_PORT": "70000"}, ["port", "FIELDCOMMS_PORT", "70000", "65535"]),
    ({"FIELDCOMMS_PORT": "0"}, ["port", "0"]),
    ({"FIELDCOMMS_LOG_LEVEL": "LOUD"}, ["log_level", "LOUD", "DEBUG"]),
    ({"FIELDCOMMS_MAX_BODY_BYTES": "-1"}, ["max_body_bytes", "-1"]),
    ({"FIELDCOMMS_SSE_KEEPALIVE_S": "nan"}, ["sse_keepalive_s", "finite"]),
    ({"FIELDCOMMS_SSE_KEEPALIVE_S": "0"}, ["sse_keepalive_s"]),
    ({"FIELDCOMMS_IDEMPOTENCY_TTL_HOURS": "1"}, ["idempotency_ttl_hours", "24"]),
    ({"FIELDCOMMS_TRUSTED_PROXIES": "10.0.0.1, proxy.example"}, ["trusted_proxies", "proxy.example"]),
    ({"FIELDCOMMS_BASE_URL": "ftp://example.org"}, ["base_url", "http"]),
    ({"FIELDCOMMS_CAP_SENDER": "two words"}, ["cap_sender", "spaces"]),
    ({"FIELDCOMMS_CAP_EXPIRES_HOURS": "0"}, ["cap_expires_hours"]),
    ({"FIELDCOMMS_STALE_AFTER_MINUTES": "-5"}, ["stale_after_minutes"]),
])
def test_a_value_out_of_range_is_a_clear_error(env: dict[str, str], words: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        load_settings(None, env=env)
    message = str(exc.value)
    assert message.startswith("fieldcomms: setting ") and "\n" not in message
    assert all(w in message for w in words), message


def test_the_error_names_where_the_bad_value_came_from(tmp_path: Path) -> None:
    toml = write(tmp_path, "idempotency_ttl_hours = 2.0\n")
    with pytest.raises(SystemExit, match=f"idempotency_ttl_hours from config file {re.escape(str(toml))}"):
        load_settings(toml, env={})
    with pytest.raises(SystemExit, match="port from the command line: 99999"):
        load_settings(None, env={}, overrides={"port": 99999})
    # A value in range is taken as given, whatever its case where case does not matter.
    assert load_settings(None, env={"FIELDCOMMS_LOG_LEVEL": "debug"}).log_level == "debug"


def test_settings_made_in_code_are_checked_too() -> None:
    with pytest.raises(SettingError, match="port"):
        Settings(port=-1)
    with pytest.raises(SettingError, match="report_burst"):
        Settings().replace(report_burst=0)


def _cli(tmp_path: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FIELDCOMMS_")}
    return subprocess.run([sys.executable, "-m", "fieldcomms", *args, "--data-dir", str(tmp_path / "data")],
                          env={**clean, **env}, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("args", "env", "name"), [
    (("serve",), {"FIELDCOMMS_PORT": "70000"}, "port"),
    (("serve", "--port", "-3"), {}, "port"),
    (("serve",), {"FIELDCOMMS_LOG_LEVEL": "chatty"}, "log_level"),
    (("serve",), {"FIELDCOMMS_SSE_RING_SIZE": "0"}, "sse_ring_size"),
    (("demo",), {"FIELDCOMMS_MAX_PHOTO_BYTES": "-1"}, "max_photo_bytes"),
    (("check",), {"FIELDCOMMS_HEADER_TIMEOUT_S": "inf"}, "header_timeout_s"),
])
def test_the_command_line_refuses_a_bad_setting_in_one_line(tmp_path: Path, args: tuple[str, ...],
                                                            env: dict[str, str], name: str) -> None:
    done = _cli(tmp_path, *args, env=env)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fieldcomms: setting {name} "), done.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())  # nothing started
