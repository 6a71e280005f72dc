"""A settings change on paper: the proposed settings (a masked secret sent back means
"keep it"), what changed (secrets masked), and per service the plan: releases, drift and
the diff of the rendered files (secret values redacted)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import SecretStr

from controller.domain.mail_settings import SECRET_SETTINGS, MailSettings, build, public_values
from controller.services.managed import ManagedService
from controller.services.rendering import Release, ReleaseStore, digest_of

MASK = "********"


def propose(
    stored: Mapping[str, Any],
    values: Mapping[str, Any],
    *,
    replace: bool,
    defaults: Mapping[str, Any],
) -> MailSettings:
    """The settings after a PUT (`replace`) or PATCH of `values` over `stored`."""
    # A masked secret sent back unchanged (e.g. from a GET) means "keep it".
    values = {
        name: value
        for name, value in values.items()
        if not (name in SECRET_SETTINGS and value == MASK)
    }
    if replace:
        kept = {name: stored[name] for name in SECRET_SETTINGS if name in stored}
        merged = {**kept, **values}
    else:
        merged = {**stored, **values}
    # null resets a setting to its default.
    merged = {name: value for name, value in merged.items() if value is not None}
    return build(merged, defaults)


def setting_changes(old: MailSettings, new: MailSettings) -> list[dict[str, Any]]:
    before, after = public_values(old), public_values(new)
    changes = []
    for name in after:
        old_value, new_value = getattr(old, name), getattr(new, name)
        if isinstance(old_value, SecretStr) or isinstance(new_value, SecretStr):
            if _secret(old_value) == _secret(new_value):
                continue
            changes.append(
                {"name": name, "old": before[name], "new": after[name] and MASK + " (changed)"}
            )
        elif old_value != new_value:
            changes.append({"name": name, "old": before[name], "new": after[name]})
    return changes


def _secret(value: object) -> str | None:
    return value.get_secret_value() if isinstance(value, SecretStr) else None


def _redact(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text


def files_diff(
    service: str, running: Mapping[str, bytes], desired: Mapping[str, bytes], secrets: Sequence[str]
) -> str:
    """The unified diff from the running to the desired files, secrets masked."""
    secrets = sorted(set(secrets), key=len, reverse=True)
    chunks: list[str] = []
    for path in sorted(set(running) | set(desired)):
        old_raw, new_raw = running.get(path, b""), desired.get(path, b"")
        if old_raw == new_raw:
            continue
        old = _redact(old_raw.decode("utf-8", "replace"), secrets)
        new = _redact(new_raw.decode("utf-8", "replace"), secrets)
        if old == new:
            chunks.append(f"# {service}/{path}: a secret value changed (not shown)\n")
            continue
        chunks.extend(
            difflib.unified_diff(
                old.splitlines(keepends=True),
                new.splitlines(keepends=True),
                fromfile=f"running/{service}/{path}" if path in running else "/dev/null",
                tofile=f"desired/{service}/{path}" if path in desired else "/dev/null",
            )
        )
    return "".join(chunks)


def service_plan(
    service: ManagedService,
    release: Release,
    store: ReleaseStore,
    replicas: Mapping[str, str | None],
    secrets: Sequence[str],
) -> dict[str, Any]:
    """What would change for one service: its releases, whether any replica or file
    drifted, and the diff of its files."""
    committed = store.current_name()
    running_files = store.read(committed) if committed else {}
    desired_files = {item.path: item.content for item in release.files}
    damage = store.damage(committed) if committed else []
    changed = (
        committed is None
        or digest_of(committed) != release.digest
        or bool(damage)
        or any(active != committed for active in replicas.values())
    )
    return {
        "running_release": committed,
        "desired_release": release.digest,
        "changed": changed,
        "replicas": dict(replicas),
        "drift": damage,
        "diff": files_diff(service.name, running_files, desired_files, secrets),
    }
