"""Helpers shared by the media tests: isolated settings, and loading a script from scripts/."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from bot.config import Settings, load_settings


def make_settings(home: Path, monkeypatch: pytest.MonkeyPatch, **media: Any) -> Settings:
    """Settings under ``home`` with no RECEPTIONIST_* variable of the caller's environment,
    and these ``media`` keys."""
    for key in list(os.environ):
        if key.startswith("RECEPTIONIST_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("RECEPTIONIST_HOME", str(home))
    media.setdefault("model_dir", home / "models")
    return load_settings(None, data_dir=home / "var", media=media)


def load_script(path: Path) -> ModuleType:
    """A script of scripts/ imported as a module (they are not a package)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
