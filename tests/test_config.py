"""Configuration: file + environment, validated once, errors name the key and its source."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings
from tests.procs import ROOT


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for key in list(os.environ):
        if key.startswith("RECEPTIONIST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("RECEPTIONIST_HOME", str(tmp_path))


def test_defaults_resolve_under_home(tmp_path: Path) -> None:
    s = load_settings()
    assert s.home == tmp_path.resolve()
    assert s.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve() / 'var' / 'receptionist.db'}"
    assert s.server.base_url == "http://127.0.0.1:8080"
    assert s.rasa.base_url == "http://127.0.0.1:5005"
    assert s.limits.max_message_chars == 5000


def test_file_then_env_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "receptionist.toml").write_text("[server]\nport = 9001\n[rasa]\nport = 6000\n")
    assert load_settings().server.port == 9001
    monkeypatch.setenv("RECEPTIONIST_SERVER__PORT", "9002")
    s = load_settings()
    assert s.server.port == 9002
    assert s.rasa.port == 6000


def test_bad_env_value_names_key_and_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RECEPTIONIST_SERVER__PORT", "eighty")
    with pytest.raises(ConfigError) as err:
        load_settings()
    msg = str(err.value)
    assert "server.port" in msg
    assert "RECEPTIONIST_SERVER__PORT" in msg
    assert "'eighty'" in msg


def test_bad_file_value_names_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "receptionist.toml"
    cfg.write_text("[limits]\nmax_message_chars = 0\n")
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "limits.max_message_chars" in str(err.value)
    assert str(cfg) in str(err.value)


def test_unknown_keys_are_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "receptionist.toml"
    cfg.write_text("[server]\nprot = 1\n")
    with pytest.raises(ConfigError, match=r"server\.prot"):
        load_settings()
    cfg.write_text("[srever]\nport = 1\n")
    with pytest.raises(ConfigError, match="srever"):
        load_settings()


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "receptionist.toml").write_text("[server\nport=1")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings()
    with pytest.raises(ConfigError, match="not found"):
        load_settings(tmp_path / "nope.toml")


def test_rasa_token_generated_once_and_private(tmp_path: Path) -> None:
    s = load_settings()
    token = s.rasa_token()
    assert len(token) >= 32
    assert s.rasa_token() == token
    path = tmp_path / "var" / "secrets" / "rasa-token"
    assert path.stat().st_mode & 0o077 == 0


def test_cli_reports_bad_config_and_exits_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[database]\necho = 'maybe'\n")
    proc = subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(bad), "doctor"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "RECEPTIONIST_HOME": str(tmp_path)},
    )
    assert proc.returncode == 2
    assert "database.echo" in proc.stderr


def test_rasa_token_starting_with_dash_reaches_rasa_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token such as "-abc" must not be read by Rasa's argument parser as an option
    (a generated token once did, and Rasa refused to start)."""
    from bot.rasa_runtime import server_command

    monkeypatch.setenv("RECEPTIONIST_RASA__TOKEN", "-Xy_z-")
    monkeypatch.setenv("RECEPTIONIST_RASA__VENV", str(ROOT / ".venv-rasa"))
    (tmp_path / "nlu-data").mkdir()
    s = load_settings()
    argv = server_command(s, tmp_path / "model.tar.gz")[1:]
    python = s.rasa_venv / "bin" / "python"
    code = (
        "import sys; from rasa.__main__ import create_argument_parser as c; "
        "print(c().parse_args(sys.argv[1:]).auth_token)"
    )
    out = subprocess.run(
        [str(python), "-c", code, *argv], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "-Xy_z-"
    for _ in range(50):
        token = s._read_or_create_secret(tmp_path / "secrets" / "t")
        assert not token.startswith("-")
        (tmp_path / "secrets" / "t").unlink()
