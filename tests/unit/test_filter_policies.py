"""Per-domain content-filter policies: defaults, PUT/PATCH, validation, scoping, and the
view `amavis_policy` Amavis reads (docs/design/filter-chain.md)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

API = "/api/v1"
Problem = Callable[..., dict[str, Any]]

DEFAULTS = {
    "spam_tag_score": 5.0,
    "spam_action_score": 12.0,
    "spam_action": "quarantine",
    "virus_action": "quarantine",
    "banned_categories": ["executables"],
    "spam_to_junk": True,
}
FULL = {
    "spam_tag_score": 4.5,
    "spam_action_score": 9,
    "spam_action": "reject",
    "virus_action": "reject",
    "banned_categories": ["scripts", "executables", "office-macros"],
    "spam_to_junk": False,
}


@pytest.fixture
def domains(make: Any) -> None:
    make.domain("a.example")
    make.domain("b.example")


def _policy_row(engine: Engine, domain: str) -> dict[str, Any] | None:
    with engine.connect() as connection:
        row = connection.execute(
            text("SELECT * FROM amavis_policy WHERE email IN (:key) ORDER BY priority DESC"),
            {"key": f"@{domain}"},
        ).first()
    return None if row is None else dict(row._mapping)


def _scoped(issuer: TestClient, client_for: Callable[[str], TestClient], **body: Any) -> TestClient:
    response = issuer.post(f"{API}/tokens", json={"name": "token", **body})
    assert response.status_code == 201, response.text
    return client_for(response.json()["token"])


# --- defaults, PUT, PATCH, reset -------------------------------------------------------------
def test_a_domain_without_a_policy_has_the_defaults(admin: TestClient, domains: None) -> None:
    response = admin.get(f"{API}/domains/a.example/filter")
    assert response.status_code == 200, response.text
    assert response.json() == {"domain": "a.example", **DEFAULTS, "is_default": True}


def test_put_replaces_the_whole_policy(admin: TestClient, domains: None) -> None:
    response = admin.put(f"{API}/domains/a.example/filter", json=FULL)
    assert response.status_code == 200, response.text
    expected = {
        "domain": "a.example",
        **FULL,
        "spam_action_score": 9.0,
        # Stored in the fixed order of the category list, whatever order was sent.
        "banned_categories": ["executables", "scripts", "office-macros"],
        "is_default": False,
    }
    assert response.json() == expected
    assert admin.get(f"{API}/domains/a.example/filter").json() == expected
    # The other domain keeps the defaults.
    assert admin.get(f"{API}/domains/b.example/filter").json()["is_default"] is True


def test_put_needs_every_field(admin: TestClient, domains: None, problem: Problem) -> None:
    body = {key: value for key, value in FULL.items() if key != "virus_action"}
    problem(admin.put(f"{API}/domains/a.example/filter", json=body), 422, detail_contains="virus")


def test_patch_changes_only_the_given_fields(admin: TestClient, domains: None) -> None:
    response = admin.patch(f"{API}/domains/a.example/filter", json={"spam_action": "deliver"})
    assert response.status_code == 200, response.text
    assert response.json() == {
        "domain": "a.example",
        **DEFAULTS,
        "spam_action": "deliver",
        "is_default": False,
    }
    response = admin.patch(
        f"{API}/domains/a.example/filter", json={"banned_categories": [], "spam_to_junk": False}
    )
    body = response.json()
    assert body["spam_action"] == "deliver"
    assert body["banned_categories"] == []
    assert body["spam_to_junk"] is False


def test_patch_checks_the_score_order_on_the_result(
    admin: TestClient, domains: None, problem: Problem
) -> None:
    # Raising both in one request works although the new tag score exceeds the old action.
    response = admin.patch(
        f"{API}/domains/a.example/filter",
        json={"spam_tag_score": 15, "spam_action_score": 20.5},
    )
    assert response.status_code == 200, response.text
    assert (response.json()["spam_tag_score"], response.json()["spam_action_score"]) == (
        15.0,
        20.5,
    )
    body = problem(
        admin.patch(f"{API}/domains/a.example/filter", json={"spam_action_score": 10}),
        422,
        detail_contains="must be at least spam_tag_score",
    )
    assert body["field"] == "spam_action_score"
    assert admin.get(f"{API}/domains/a.example/filter").json()["spam_action_score"] == 20.5


def test_delete_resets_to_the_defaults(admin: TestClient, domains: None, engine: Engine) -> None:
    admin.put(f"{API}/domains/a.example/filter", json=FULL)
    response = admin.delete(f"{API}/domains/a.example/filter")
    assert response.status_code == 200, response.text
    assert response.json() == {"domain": "a.example", **DEFAULTS, "is_default": True}
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT COUNT(*) FROM domain_filter_policies")) == 0


@pytest.mark.usefixtures("domains")
@pytest.mark.parametrize(
    "case",
    [
        ({"spam_action": "drop"}, "spam_action", "not one of: quarantine, reject, deliver"),
        ({"virus_action": "deliver"}, "virus_action", "not one of: quarantine, reject"),
        ({"banned_categories": ["exe"]}, "banned_categories", "unknown category 'exe'"),
        ({"spam_tag_score": 1000}, "spam_tag_score", "out of range"),
        ({"spam_action_score": -1000.5}, "spam_action_score", "out of range"),
        ({"spam_tag_score": 13}, "spam_action_score", "must be at least"),
    ],
)
def test_invalid_values_are_refused_with_a_useful_message(
    admin: TestClient, problem: Problem, engine: Engine, case: tuple[dict[str, Any], str, str]
) -> None:
    body, field, message = case
    response = admin.patch(f"{API}/domains/a.example/filter", json=body)
    result = problem(response, 422, detail_contains=message)
    assert result["field"] == field
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT COUNT(*) FROM domain_filter_policies")) == 0


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_scores_must_be_finite(
    admin: TestClient, domains: None, problem: Problem, number: str
) -> None:
    # Python's JSON parser accepts these tokens, so the domain layer must refuse them.
    response = admin.patch(
        f"{API}/domains/a.example/filter",
        content=f'{{"spam_tag_score": {number}}}',
        headers={"Content-Type": "application/json"},
    )
    problem(response, 422, detail_contains="spam_tag_score")


def test_strings_are_not_numbers(admin: TestClient, domains: None, problem: Problem) -> None:
    problem(admin.patch(f"{API}/domains/a.example/filter", json={"spam_tag_score": "5"}), 422)
    problem(admin.patch(f"{API}/domains/a.example/filter", json={"spam_to_junk": "yes"}), 422)
    problem(
        admin.patch(f"{API}/domains/a.example/filter", json={"banned_categories": "scripts"}),
        422,
    )


def test_unknown_domain_is_404(admin: TestClient, problem: Problem) -> None:
    problem(admin.get(f"{API}/domains/nowhere.example/filter"), 404)
    problem(admin.patch(f"{API}/domains/nowhere.example/filter", json={}), 404)
    problem(admin.put(f"{API}/domains/nowhere.example/filter", json=FULL), 404)


# --- who may ---------------------------------------------------------------------------------
def test_a_scoped_token_manages_its_domains_only(
    admin: TestClient,
    client_for: Callable[[str], TestClient],
    domains: None,
    problem: Problem,
) -> None:
    scoped = _scoped(admin, client_for, domains=["a.example"])
    assert scoped.get(f"{API}/domains/a.example/filter").status_code == 200
    response = scoped.patch(f"{API}/domains/a.example/filter", json={"spam_action": "reject"})
    assert response.status_code == 200, response.text
    assert scoped.put(f"{API}/domains/a.example/filter", json=FULL).status_code == 200
    # Another domain is invisible: 404, exactly as for one that does not exist.
    problem(scoped.get(f"{API}/domains/b.example/filter"), 404)
    problem(scoped.patch(f"{API}/domains/b.example/filter", json={"spam_action": "reject"}), 404)
    problem(scoped.put(f"{API}/domains/b.example/filter", json=FULL), 404)
    problem(scoped.delete(f"{API}/domains/b.example/filter"), 404)
    assert admin.get(f"{API}/domains/b.example/filter").json()["is_default"] is True


def test_read_only_tokens_read_but_never_write(
    admin: TestClient,
    client_for: Callable[[str], TestClient],
    domains: None,
    problem: Problem,
) -> None:
    for body in ({"admin": True, "read_only": True}, {"domains": ["a.example"], "read_only": True}):
        reader = _scoped(admin, client_for, **body)
        assert reader.get(f"{API}/domains/a.example/filter").status_code == 200
        problem(
            reader.patch(f"{API}/domains/a.example/filter", json={"spam_action": "reject"}),
            403,
            detail_contains="read-only",
        )
        problem(reader.put(f"{API}/domains/a.example/filter", json=FULL), 403)
        problem(reader.delete(f"{API}/domains/a.example/filter"), 403)
    assert admin.get(f"{API}/domains/a.example/filter").json()["is_default"] is True


def test_no_token_is_401(client: TestClient, domains: None, problem: Problem) -> None:
    problem(client.get(f"{API}/domains/a.example/filter"), 401)


# --- the database side -----------------------------------------------------------------------
def test_deleting_the_domain_deletes_its_policy(
    admin: TestClient, domains: None, engine: Engine
) -> None:
    admin.put(f"{API}/domains/a.example/filter", json=FULL)
    assert admin.delete(f"{API}/domains/a.example").status_code == 204
    with engine.connect() as connection:
        assert connection.scalar(text("SELECT COUNT(*) FROM domain_filter_policies")) == 0
    # Created again, the domain starts from the defaults.
    assert admin.post(f"{API}/domains", json={"name": "a.example"}).status_code == 201
    assert admin.get(f"{API}/domains/a.example/filter").json()["is_default"] is True


def test_the_foreign_key_cascades(admin: TestClient, domains: None, engine: Engine) -> None:
    admin.put(f"{API}/domains/a.example/filter", json=FULL)
    with engine.begin() as connection:
        connection.execute(text("DELETE FROM domains WHERE name = 'a.example'"))
        assert connection.scalar(text("SELECT COUNT(*) FROM domain_filter_policies")) == 0


@pytest.mark.parametrize(
    "values",
    [
        ("drop", "quarantine", 5.0, 12.0),
        ("quarantine", "deliver", 5.0, 12.0),
        ("quarantine", "quarantine", 12.0, 5.0),
    ],
)
def test_check_constraints_guard_rows_written_behind_the_api(
    domains: None, engine: Engine, values: tuple[str, str, float, float]
) -> None:
    with engine.connect() as connection:
        domain_id = connection.scalar(text("SELECT id FROM domains WHERE name = 'a.example'"))
    statement = text(
        "INSERT INTO domain_filter_policies (domain_id, spam_action, virus_action, "
        "spam_tag_score, spam_action_score, updated_at) "
        "VALUES (:id, :spam, :virus, :tag, :action, '2026-01-01')"
    )
    spam, virus, tag, action = values
    parameters = {"id": domain_id, "spam": spam, "virus": virus, "tag": tag, "action": action}
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(statement, parameters)


def test_the_view_gives_amavis_the_defaults(domains: None, engine: Engine) -> None:
    with engine.connect() as connection:
        domain_id = connection.scalar(text("SELECT id FROM domains WHERE name = 'a.example'"))
    assert _policy_row(engine, "a.example") == {
        "email": "@a.example",
        "priority": 5,
        "local": "Y",
        "id": domain_id,
        "spam_lover": "N",
        "virus_lover": "N",
        "banned_files_lover": "N",
        "spam_tag_level": -999,
        "spam_tag2_level": 5.0,
        "spam_kill_level": 12.0,
        "spam_dsn_cutoff_level": 0,
        "spam_quarantine_to": "spam-quarantine",
        "virus_quarantine_to": "virus-quarantine",
        "banned_quarantine_to": "banned-quarantine",
        "banned_rulenames": "executables",
    }


def test_the_view_follows_the_policy_live(admin: TestClient, domains: None, engine: Engine) -> None:
    admin.put(f"{API}/domains/a.example/filter", json=FULL)
    row = _policy_row(engine, "a.example")
    assert row is not None
    assert row["spam_lover"] == "N"
    assert (row["spam_tag2_level"], row["spam_kill_level"]) == (4.5, 9.0)
    assert row["spam_dsn_cutoff_level"] == 9999  # rejected spam gets a DSN
    assert row["spam_quarantine_to"] == ""
    assert row["virus_quarantine_to"] == ""
    assert row["banned_quarantine_to"] == ""
    assert row["banned_rulenames"] == "executables,scripts,office-macros"

    admin.patch(
        f"{API}/domains/a.example/filter",
        json={"spam_action": "deliver", "virus_action": "quarantine", "banned_categories": []},
    )
    row = _policy_row(engine, "a.example")
    assert row is not None
    assert row["spam_lover"] == "Y"
    assert row["spam_dsn_cutoff_level"] == 0
    assert row["spam_quarantine_to"] == ""
    assert row["virus_quarantine_to"] == "virus-quarantine"
    assert row["banned_quarantine_to"] == "banned-quarantine"
    assert row["banned_rulenames"] == ""
    # The other domain is untouched.
    other = _policy_row(engine, "b.example")
    assert other is not None
    assert other["spam_quarantine_to"] == "spam-quarantine"


def test_the_view_lists_active_domains_only(
    admin: TestClient, domains: None, engine: Engine
) -> None:
    assert admin.patch(f"{API}/domains/b.example", json={"active": False}).status_code == 200
    assert _policy_row(engine, "b.example") is None
    with engine.connect() as connection:
        emails = connection.scalars(text("SELECT email FROM amavis_policy")).all()
    assert emails == ["@a.example"]
