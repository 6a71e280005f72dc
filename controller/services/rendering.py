"""Renders a service's templates into a release: a directory named by its content hash.

A release is immutable once written. `current` is a symlink to the committed release:
the one a container starts with. Each container also has its own `active` link to the
release it runs (images/common/activate-release.sh), which the controller moves one
replica at a time. Switching either link is one rename(2), so a daemon sees the old
files or the new ones, never a mix. The same rendered content always has the same name,
so re-rendering unchanged settings changes nothing on disk.

Every release holds a manifest (MANIFEST) with the digest of each file, so a file edited
by hand is detected. A damaged release is never repaired in place (a daemon may be
reading it): a fresh copy is written under `<digest>.<suffix>` and rolled out instead.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets
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
MANIFEST = ".mailyard-release.json"
DIGEST_LENGTH = 20
# A release directory: its digest, optionally with the suffix of a repair copy.
RELEASE_NAME = re.compile(r"^[0-9a-f]{20}(\.[0-9a-z]{6})?$")


def digest_of(name: str) -> str:
    """The content digest a release directory name stands for."""
    return name.split(".", 1)[0]


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
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates_dir / service),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - config files, not HTML
    )
    environment.filters["yesno"] = _yes_no
    return environment


def _yes_no(value: object) -> str:
    """Postfix booleans. Only real booleans: a string "no" must not become "yes"."""
    if not isinstance(value, bool):
        raise TypeError(f"yesno expects a bool, got {value!r}")
    return "yes" if value else "no"


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

    def path_of(self, name: str) -> Path:
        return self.releases / name

    def current_name(self) -> str | None:
        """The committed release's directory name, or None before the first one."""
        try:
            target = os.readlink(self.current_link)
        except FileNotFoundError:
            return None
        return Path(target).name

    def write(self, release: Release) -> str:
        """Write `release` unless an intact copy exists; returns its directory name.

        When the copy under its digest was edited by hand, an intact repair copy is
        reused or a new one written under a suffixed name; the damaged one is left alone.
        """
        name = release.digest
        if self.path_of(name).is_dir():
            if not self.damage(name):
                return name
            if repair := self._intact_copy(release.digest):
                return repair  # written by an earlier pass: reuse it, do not pile up copies
            name = f"{release.digest}.{secrets.token_hex(3)}"
        final = self.path_of(name)
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
            manifest = {
                "digest": release.digest,
                "files": {
                    item.path: hashlib.sha256(item.content).hexdigest() for item in release.files
                },
            }
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            os.chmod(staging, 0o755)  # noqa: S103 - secrets are in 0640 files
            os.rename(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return name

    def _intact_copy(self, digest: str) -> str | None:
        for path in sorted(self.releases.glob(f"{digest}.*")):
            if RELEASE_NAME.fullmatch(path.name) and not self.damage(path.name):
                return path.name
        return None

    def activate(self, name: str) -> None:
        """Point `current` at the release `name`, atomically."""
        if not RELEASE_NAME.fullmatch(name) or not self.path_of(name).is_dir():
            raise FileNotFoundError(f"release {name} of {self.root.name} was never written")
        temporary = self.root / f".{CURRENT}.{os.getpid()}"
        temporary.unlink(missing_ok=True)
        os.symlink(f"{RELEASES}/{name}", temporary)
        os.replace(temporary, self.current_link)

    def read(self, name: str) -> dict[str, bytes]:
        """The release's files (without its manifest), by relative path."""
        base = self.path_of(name)
        return {
            str(path.relative_to(base)): path.read_bytes()
            for path in sorted(base.rglob("*"))
            if path.is_file() and path.name != MANIFEST
        }

    def damage(self, name: str) -> list[str]:
        """What differs from the release's manifest: edited, missing or extra files."""
        base = self.path_of(name)
        try:
            manifest = json.loads((base / MANIFEST).read_text())
            expected: dict[str, str] = dict(manifest["files"])
        except (OSError, ValueError, KeyError, TypeError):
            return [f"release {name} has no readable manifest"]
        problems = []
        actual = self.read(name) if base.is_dir() else {}
        for path, digest in sorted(expected.items()):
            if path not in actual:
                problems.append(f"{path} is missing")
            elif hashlib.sha256(actual[path]).hexdigest() != digest:
                problems.append(f"{path} was edited by hand")
        problems.extend(f"{path} was added by hand" for path in sorted(set(actual) - set(expected)))
        return problems

    def remove(self, name: str) -> None:
        if RELEASE_NAME.fullmatch(name) and name != self.current_name():
            shutil.rmtree(self.path_of(name), ignore_errors=True)

    def prune(self, keep: int = 5, in_use: frozenset[str] = frozenset()) -> None:
        """Delete old releases, keeping `current`, those `in_use` and the `keep` newest."""
        if not self.releases.is_dir():
            return
        protected = {self.current_name(), *in_use}
        candidates = sorted(
            (
                p
                for p in self.releases.iterdir()
                if p.is_dir() and RELEASE_NAME.fullmatch(p.name) and p.name not in protected
            ),
            key=lambda p: p.stat().st_mtime,
            reverse=True,
        )
        for stale in candidates[keep:]:
            shutil.rmtree(stale, ignore_errors=True)


def _set_owner(path: Path, gid: int) -> None:
    hand_to_group(path, gid)


def hand_to_group(path: Path, gid: int) -> None:
    """Give `path` to a service's group (e.g. postfix for files with a database password).

    The controller runs as an unprivileged user that is a member of those groups
    (images/controller/Dockerfile), which is all chown needs to change a file's group;
    unit tests run as a user without them, and leave the group alone.
    """
    if not gid:
        return
    if os.geteuid() == 0:
        os.chown(path, 0, gid)
    elif gid in os.getgroups():
        os.chown(path, -1, gid)
    else:
        log.debug("not in group %d: leaving the group of %s unchanged", gid, path)
