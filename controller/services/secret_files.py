"""Secrets generated at first start and kept in a volume, never in an image or a log."""

from __future__ import annotations

import os
import secrets
from pathlib import Path


def read_secret(path: Path) -> str:
    return path.read_text(encoding="ascii").strip()


def write_secret(path: Path, value: str) -> None:
    """Write atomically with mode 0600 (readable by root only)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    os.replace(temporary, path)


def ensure_secret(path: Path, nbytes: int = 32) -> str:
    """Return the secret at `path`, generating a URL-safe random one if absent."""
    if path.exists():
        return read_secret(path)
    value = secrets.token_urlsafe(nbytes)
    write_secret(path, value)
    return value
