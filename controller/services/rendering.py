"""Renders a service's templates into a release: a directory named by its content hash.

A release is immutable once written. `current` is a symlink to the release in service;
switching it is one rename(2), so a service sees the old files or the new ones, never a
mix. The same rendered content always has the same name, so re-rendering unchanged
settings changes nothing on disk.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2

log = logging.getLogger(__name__)

RELEASES = "releases"
CURRENT = "current"
DIGEST_LENGTH = 20


@dataclass(frozen=True)
class TemplateFile:
    """A template of a service and where its output goes in the release."""

    template: str  # relative to templates/<service>/
    output: str  # relative to the release directory
    mode: int = 0o644
    gid: int = 0  # group that must read it (e.g. postfix for files with a DB password)


@dataclass(frozen=True)
class RenderedFile:
    path: str
    content: bytes
    mode: int
    gid: int


@dataclass(frozen=True)
class Release:
    service: str
    files: tuple[RenderedFile, ...]

    @cached_property
    def digest(self) -> str:
        hasher = hashlib.sha256()
        for item in sorted(self.files, key=lambda f: f.path):
            hasher.update(f"{item.path}\0{item.mode:o}\0{item.gid}\0".encode())
            hasher.update(hashlib.sha256(item.content).digest())
        return hasher.hexdigest()[:DIGEST_LENGTH]


def _environment(templates_dir: Path, service: str) -> jinja2.Environment:
    # Config files, not HTML: autoescaping would corrupt them. Values are validated
    # before they reach a template (controller.domain.validation).
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir / service),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - config files, not HTML
    )


def render_release(
    templates_dir: Path,
    service: str,
    files: Sequence[TemplateFile],
    context: Mapping[str, Any],
) -> Release:
    """Render every template of `service` with `context` (StrictUndefined: a missing
    value is an error, never an empty string in a config file)."""
    environment = _environment(templates_dir, service)
    rendered = tuple(
        RenderedFile(
            path=item.output,
            content=environment.get_template(item.template).render(**context).encode("utf-8"),
            mode=item.mode,
            gid=item.gid,
        )
        for item in files
    )
    return Release(service=service, files=rendered)


class ReleaseStore:
    """The releases of one service in its rendered-config volume."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.releases = root / RELEASES
        self.current_link = root / CURRENT

    def path_of(self, digest: str) -> Path:
        return self.releases / digest

    def current_digest(self) -> str | None:
        try:
            target = os.readlink(self.current_link)
        except FileNotFoundError:
            return None
        return Path(target).name

    def write(self, release: Release) -> Path:
        """Write `release` unless it exists; returns its directory."""
        final = self.path_of(release.digest)
        if final.is_dir():
            return final
        self.releases.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.releases))
        try:
            for item in release.files:
                target = staging / item.path
                target.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(target.parent, 0o755)  # noqa: S103 - services traverse it
                target.write_bytes(item.content)
                _set_owner(target, item.gid)
                os.chmod(target, item.mode)
            os.chmod(staging, 0o755)  # noqa: S103 - secrets are in 0640 files
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return final

    def activate(self, digest: str) -> None:
        """Point `current` at the release `digest`, atomically."""
        if not self.path_of(digest).is_dir():
            raise FileNotFoundError(f"release {digest} of {self.root.name} was never written")
        temporary = self.root / f".{CURRENT}.{os.getpid()}"
        temporary.unlink(missing_ok=True)
        os.symlink(f"{RELEASES}/{digest}", temporary)
        os.replace(temporary, self.current_link)

    def read(self, digest: str) -> dict[str, bytes]:
        base = self.path_of(digest)
        return {
            str(path.relative_to(base)): path.read_bytes()
            for path in sorted(base.rglob("*"))
            if path.is_file()
        }

    def prune(self, keep: int = 5) -> None:
        """Delete old releases, keeping `current` and the `keep` newest others."""
        if not self.releases.is_dir():
            return
        current = self.current_digest()
        candidates = sorted(
            (p for p in self.releases.iterdir() if p.is_dir() and p.name != current),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for stale in candidates[keep:]:
            shutil.rmtree(stale, ignore_errors=True)


def _set_owner(path: Path, gid: int) -> None:
    # Only root can hand files to a service's group; unit tests run unprivileged.
    if os.geteuid() == 0:
        os.chown(path, 0, gid)
    elif gid:
        log.debug("not root: leaving group of %s unchanged (wanted %d)", path, gid)
