"""Process settings are frozen (read once at start): tests that need others make a copy."""

from __future__ import annotations

from typing import Any

from controller.settings import Settings


def changed(settings: Settings, **values: Any) -> Settings:
    """A copy of `settings` with `values`, validated as at start."""
    return Settings.model_validate({**settings.model_dump(), **values})
