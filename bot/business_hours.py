"""Opening hours for the queue, from the business profile (``nlu-data/business.yml``).

The profile's parser and calendar live with the custom actions
(``nlu-data/actions/business.py``, standard library and PyYAML only); the bot service loads
that same module from the Rasa project, so the bot's answers and the queue's idea of "open"
can never disagree. A project without a profile is treated as always open.
"""

from __future__ import annotations

import importlib.util
import sys
from datetime import datetime
from pathlib import Path
from types import ModuleType

import structlog

log = structlog.get_logger("bot.business")


def _load(module_path: Path) -> ModuleType | None:
    if not module_path.is_file():
        return None
    spec = importlib.util.spec_from_file_location("receptionist_business_profile", module_path)
    if spec is None or spec.loader is None:
        return None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class BusinessHours:
    def __init__(self, project_dir: Path) -> None:
        self._file = project_dir / "business.yml"
        self._module = _load(project_dir / "actions" / "business.py")

    def open_at(self, when: datetime) -> bool | None:
        """Whether the business is open at ``when``; ``None`` when it has no usable profile."""
        if self._module is None or not self._file.is_file():
            return None
        try:
            profile = self._module.current_profile(self._file)
            return bool(profile.open_at(when))
        except (OSError, ValueError) as exc:  # a broken profile must not break the queue
            log.warning("business.profile.unusable", file=str(self._file), error=str(exc))
            return None
