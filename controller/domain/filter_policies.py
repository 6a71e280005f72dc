"""Per-domain content-filter policies (spam and virus handling, banned attachments).

A domain without a row in `domain_filter_policies` uses the defaults below; Amavis reads
both through the view `amavis_policy` (docs/design/filter-chain.md), so a change is live
for the next message, with no reload.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

from sqlalchemy import delete

from controller.db.models import FILTER_SPAM_ACTIONS, FILTER_VIRUS_ACTIONS, DomainFilterPolicy
from controller.domain.access import Context
from controller.domain.domains import get_domain
from controller.errors import InvalidInput

# Fixed names, one `%banned_rules` entry each in the Amavis configuration.
BANNED_CATEGORIES = (
    "executables",
    "scripts",
    "office-macros",
    "double-extensions",
    "archives-encrypted",
)
# SpamAssassin scores; beyond these bounds a value is a typo (Amavis uses -999 and 9999
# as "always" and "never" markers itself).
MIN_SCORE = -999.0
MAX_SCORE = 999.0


@dataclass(frozen=True)
class FilterPolicy:
    """A domain's effective policy (stored, or the defaults)."""

    domain: str
    spam_tag_score: float = 5.0
    spam_action_score: float = 12.0
    spam_action: str = "quarantine"
    virus_action: str = "quarantine"
    banned_categories: tuple[str, ...] = ("executables",)
    spam_to_junk: bool = True
    is_default: bool = True


@dataclass(frozen=True)
class FilterPolicyValues:
    """Every field of a policy (PUT)."""

    spam_tag_score: float
    spam_action_score: float
    spam_action: str
    virus_action: str
    banned_categories: Iterable[str]
    spam_to_junk: bool


@dataclass(frozen=True)
class FilterPolicyChanges:
    """Fields to change; None leaves a field as it is (PATCH)."""

    spam_tag_score: float | None = None
    spam_action_score: float | None = None
    spam_action: str | None = None
    virus_action: str | None = None
    banned_categories: Iterable[str] | None = None
    spam_to_junk: bool | None = None


def _check_score(value: float, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{field} must be a number", field=field)
    number = float(value)
    if not math.isfinite(number):
        raise InvalidInput(
            f"{field} must be a finite number from {MIN_SCORE:g} to {MAX_SCORE:g}", field=field
        )
    if not MIN_SCORE <= number <= MAX_SCORE:
        raise InvalidInput(
            f"{field} {number:g} is out of range: use {MIN_SCORE:g} to {MAX_SCORE:g} "
            "(SpamAssassin scores; 5 and 12 are the defaults)",
            field=field,
        )
    return number


def _check_choice(value: str, allowed: tuple[str, ...], field: str) -> str:
    if value not in allowed:
        raise InvalidInput(f"{field} '{value}' is not one of: {', '.join(allowed)}", field=field)
    return value


def check_banned_categories(
    values: Iterable[str], field: str = "banned_categories"
) -> tuple[str, ...]:
    """Known category names, without duplicates, in the fixed order of BANNED_CATEGORIES."""
    if isinstance(values, str):
        raise InvalidInput(
            f'{field} must be a list of names, e.g. ["executables", "scripts"]', field=field
        )
    chosen = set()
    for value in values:
        if not isinstance(value, str) or value not in BANNED_CATEGORIES:
            raise InvalidInput(
                f"{field}: unknown category {value!r}; known categories are "
                f"{', '.join(BANNED_CATEGORIES)}",
                field=field,
            )
        chosen.add(value)
    return tuple(name for name in BANNED_CATEGORIES if name in chosen)


def _validated(policy: FilterPolicy) -> FilterPolicy:
    tag = _check_score(policy.spam_tag_score, "spam_tag_score")
    action = _check_score(policy.spam_action_score, "spam_action_score")
    if action < tag:
        raise InvalidInput(
            f"spam_action_score ({action:g}) must be at least spam_tag_score ({tag:g}): "
            "mail is first tagged as spam, then acted on at the higher score",
            field="spam_action_score",
        )
    return replace(
        policy,
        spam_tag_score=tag,
        spam_action_score=action,
        spam_action=_check_choice(policy.spam_action, FILTER_SPAM_ACTIONS, "spam_action"),
        virus_action=_check_choice(policy.virus_action, FILTER_VIRUS_ACTIONS, "virus_action"),
        banned_categories=check_banned_categories(policy.banned_categories),
        spam_to_junk=_check_bool(policy.spam_to_junk, "spam_to_junk"),
    )


def _check_bool(value: bool, field: str) -> bool:
    if not isinstance(value, bool):
        raise InvalidInput(f"{field} must be true or false", field=field)
    return value


def _of(domain: str, row: DomainFilterPolicy | None) -> FilterPolicy:
    if row is None:
        return FilterPolicy(domain=domain)
    categories = tuple(name for name in row.banned_categories.split(",") if name)
    return FilterPolicy(
        domain=domain,
        spam_tag_score=row.spam_tag_score,
        spam_action_score=row.spam_action_score,
        spam_action=row.spam_action,
        virus_action=row.virus_action,
        banned_categories=categories,
        spam_to_junk=row.spam_to_junk,
        is_default=False,
    )


def get_filter_policy(ctx: Context, domain_name: str) -> FilterPolicy:
    """The domain's policy, the defaults when it never changed them (404 if not visible)."""
    domain = get_domain(ctx, domain_name)
    row = ctx.session.get(DomainFilterPolicy, domain.id)
    return _of(domain.name, row)


def _store(ctx: Context, domain_id: int, policy: FilterPolicy) -> None:
    row = ctx.session.get(DomainFilterPolicy, domain_id)
    if row is None:
        row = DomainFilterPolicy(domain_id=domain_id)
        ctx.session.add(row)
    row.spam_tag_score = policy.spam_tag_score
    row.spam_action_score = policy.spam_action_score
    row.spam_action = policy.spam_action
    row.virus_action = policy.virus_action
    row.banned_categories = ",".join(policy.banned_categories)
    row.spam_to_junk = policy.spam_to_junk
    ctx.session.commit()


def replace_filter_policy(
    ctx: Context, domain_name: str, values: FilterPolicyValues
) -> FilterPolicy:
    """PUT: the whole policy at once."""
    ctx.principal.require_write()
    domain = get_domain(ctx, domain_name)
    ctx.principal.require_domain_write(domain.name)
    new = _validated(
        FilterPolicy(
            domain=domain.name,
            spam_tag_score=values.spam_tag_score,
            spam_action_score=values.spam_action_score,
            spam_action=values.spam_action,
            virus_action=values.virus_action,
            banned_categories=check_banned_categories(values.banned_categories),
            spam_to_junk=values.spam_to_junk,
            is_default=False,
        )
    )
    _store(ctx, domain.id, new)
    return new


def update_filter_policy(
    ctx: Context, domain_name: str, changes: FilterPolicyChanges
) -> FilterPolicy:
    """PATCH: change the given fields, keep the others (the defaults if none was stored).

    The score order is checked on the result, so raising both scores in one request works.
    """
    ctx.principal.require_write()
    domain = get_domain(ctx, domain_name)
    ctx.principal.require_domain_write(domain.name)
    current = _of(domain.name, ctx.session.get(DomainFilterPolicy, domain.id))
    new = replace(current, is_default=False)
    if changes.spam_tag_score is not None:
        new = replace(new, spam_tag_score=changes.spam_tag_score)
    if changes.spam_action_score is not None:
        new = replace(new, spam_action_score=changes.spam_action_score)
    if changes.spam_action is not None:
        new = replace(new, spam_action=changes.spam_action)
    if changes.virus_action is not None:
        new = replace(new, virus_action=changes.virus_action)
    if changes.banned_categories is not None:
        new = replace(new, banned_categories=check_banned_categories(changes.banned_categories))
    if changes.spam_to_junk is not None:
        new = replace(new, spam_to_junk=changes.spam_to_junk)
    new = _validated(new)
    _store(ctx, domain.id, new)
    return new


def reset_filter_policy(ctx: Context, domain_name: str) -> FilterPolicy:
    """Back to the defaults: the row goes, the view supplies the defaults again."""
    ctx.principal.require_write()
    domain = get_domain(ctx, domain_name)
    ctx.principal.require_domain_write(domain.name)
    ctx.session.execute(delete(DomainFilterPolicy).where(DomainFilterPolicy.domain_id == domain.id))
    ctx.session.commit()
    return FilterPolicy(domain=domain.name)
