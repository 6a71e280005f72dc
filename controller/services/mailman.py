"""Mailing lists: a small typed facade over `mailmanclient`, the only module importing it.

Mailman 3 core (the `mailman-core` container, docs/design/mailman.md) owns every piece of
list state: lists, settings, members and their roles, held messages. The controller keeps
no copy; it reads and changes that state through Mailman's REST API, here. The rest of
the controller sees the `ListsBackend` protocol and the plain dataclasses below, and gets
errors as its own (controller.errors), written for a person:

- Mailman unreachable, too slow, failing (5xx) or refusing our credentials:
  `ListServiceUnavailable` (503); no REST password file yet: `ListServiceNotConfigured`
  (a subclass, also 503);
- an unknown list, member or held message: `NotFound` (404);
- a duplicate (Mailman answers 409, or 400 "... exists"): `Conflict` (409);
- any other value Mailman refuses (4xx): `InvalidInput` (422).

Values are validated by the domain layer (controller/domain/lists.py) before they get
here; this module passes them on unchanged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.error import HTTPError

import requests
from mailmanclient import Client, MailmanConnectionError  # type: ignore[import-untyped]

from controller.domain.list_service import (
    DELIVERY_OFF,
    DELIVERY_ON,
    SERVICE,
    HeldMessage,
    ListInfo,
    ListMember,
    ListServiceNotConfigured,
    ListServiceUnavailable,
    ListSettings,
    MemberPage,
)
from controller.errors import Conflict, InvalidInput, NotFound
from controller.services.secret_files import read_secret

log = logging.getLogger(__name__)

_MAX_DETAIL = 300
T = TypeVar("T")


def _short(text: object) -> str:
    value = " ".join(str(text).split())
    return value if len(value) <= _MAX_DETAIL else value[: _MAX_DETAIL - 3] + "..."


def _parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Mailman stores naive UTC times.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _http_error_of(exc: BaseException) -> HTTPError | None:
    """mailmanclient turns some HTTP errors into ValueError("x is not a member ...")
    raised inside its `except HTTPError`; the original is the context."""
    if isinstance(exc, HTTPError):
        return exc
    context = exc.__context__
    return context if isinstance(context, HTTPError) else None


def _delivery_on(status: object) -> bool:
    # Unset means Mailman's default, which delivers.
    return status is None or status == DELIVERY_ON


class MailmanClientBackend:
    """`ListsBackend` over Mailman's REST API (mailmanclient 3.3.5, the calls proven in
    docs/design/mailman.md). Thread-safe: mailmanclient opens a request per call.

    The REST password is read from `password_file` at the first call (the file is made
    by the db container and may not exist yet when the controller starts), and again
    after Mailman refused it (401), so a regenerated password is picked up.
    """

    def __init__(self, url: str, user: str, password_file: Path, timeout: float = 10.0) -> None:
        self.url = url
        self.user = user
        self.password_file = password_file
        self.timeout = timeout
        self._lock = threading.Lock()
        self._client: Any = None

    # --- connection and error translation ---------------------------------------------
    def _with_timeout(self, params: dict[str, Any]) -> dict[str, Any]:
        # mailmanclient passes no timeout to requests: a hung Mailman would hang us.
        params["timeout"] = self.timeout
        return params

    def _connect(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    password = read_secret(self.password_file)
                except FileNotFoundError as exc:
                    raise ListServiceNotConfigured(
                        f"{SERVICE} is not set up: its REST password file "
                        f"{self.password_file} does not exist (the db container writes it "
                        "at its start; restart db, then mailman-core)"
                    ) from exc
                except (OSError, ValueError) as exc:
                    raise ListServiceUnavailable(
                        f"{SERVICE}: cannot read its REST password from "
                        f"{self.password_file}: {_short(exc)}"
                    ) from exc
                if not password:
                    raise ListServiceUnavailable(
                        f"{SERVICE}: the REST password file {self.password_file} is empty"
                    )
                self._client = Client(
                    self.url, self.user, password, request_hooks=[self._with_timeout]
                )
            return self._client

    def _forget_client(self) -> None:
        with self._lock:
            self._client = None

    def _call(
        self,
        action: Callable[[Any], T],
        *,
        missing: str,
        conflict: str | None = None,
    ) -> T:
        """Run `action(client)`, translating mailmanclient's errors (see the module doc).
        `missing` is the 404 message, `conflict` the 409 message (Mailman's otherwise)."""
        client = self._connect()
        try:
            return action(client)
        except MailmanConnectionError as exc:
            raise ListServiceUnavailable(self._unreachable(exc)) from exc
        except HTTPError as exc:
            raise self._translate(exc, missing, conflict) from exc
        except ValueError as exc:
            http = _http_error_of(exc)
            if http is None:
                raise
            raise self._translate(http, missing, conflict) from exc

    def _unreachable(self, exc: MailmanConnectionError) -> str:
        cause = exc.__context__
        if isinstance(cause, requests.Timeout):
            why = f"no answer from {self.url} within {self.timeout:g} s"
        elif isinstance(cause, requests.ConnectionError):
            why = f"cannot connect to {self.url} ({_short(cause)})"
        else:
            why = f"{self.url}: {_short(cause if cause is not None else exc)}"
        return (
            f"{SERVICE} is not reachable: {why}; check that the mailman-core container is "
            "running and healthy (`docker compose ps mailman-core`, `docker compose logs "
            "mailman-core`) and retry"
        )

    def _translate(
        self, exc: HTTPError, missing: str, conflict: str | None
    ) -> ListServiceUnavailable | NotFound | Conflict | InvalidInput:
        code = exc.code
        detail = _short(exc.msg or exc.reason or "")
        if code in (401, 403):
            self._forget_client()
            return ListServiceUnavailable(
                f"{SERVICE} refused the controller's REST credentials (HTTP {code}): the "
                f"password in {self.password_file} must be the one mailman-core started "
                "with; restart mailman-core so that it reads the current file"
            )
        if code >= 500:
            return ListServiceUnavailable(
                f"{SERVICE} failed (HTTP {code}: {detail or 'no detail'}); see `docker "
                "compose logs mailman-core` and retry"
            )
        if code == 404:
            return NotFound(missing)
        lowered = detail.lower()
        if code == 409 or (
            code == 400 and any(word in lowered for word in ("exist", "already", "duplicate"))
        ):
            return Conflict(conflict or f"{SERVICE}: {detail}")
        return InvalidInput(f"{SERVICE} refused the request (HTTP {code}): {detail}")

    # --- lookups -------------------------------------------------------------------------
    @staticmethod
    def _mailman_list(client: Any, address: str) -> Any:
        """The list object, with its data loaded; NotFound for an unknown list."""
        try:
            return client.get_list(address)
        except HTTPError as exc:
            if exc.code == 404:
                raise NotFound(f"mailing list '{address}' not found") from exc
            raise

    @staticmethod
    def _info(mlist: Any) -> ListInfo:
        data: Mapping[str, Any] = mlist.rest_data
        settings = mlist.settings

        def text(key: str) -> str:
            value = settings.get(key, data.get(key))
            return "" if value is None else str(value)

        return ListInfo(
            address=str(data["fqdn_listname"]),
            list_name=str(data["list_name"]),
            mail_host=str(data["mail_host"]),
            display_name=text("display_name"),
            subject_prefix=text("subject_prefix"),
            description=text("description"),
            archive_policy=text("archive_policy"),
            default_member_action=text("default_member_action"),
            default_nonmember_action=text("default_nonmember_action"),
            member_count=int(data.get("member_count") or 0),
        )

    @staticmethod
    def _member(member: Any, with_delivery: bool = True) -> ListMember:
        data: Mapping[str, Any] = member.rest_data
        role = str(data.get("role") or "member")
        delivery: bool | None = None
        if role == "member" and with_delivery:
            delivery = _delivery_on(member.preferences.get("delivery_status"))
        return ListMember(
            email=str(data.get("email") or ""),
            role=role,
            display_name=str(data.get("display_name") or ""),
            delivery=delivery,
        )

    @staticmethod
    def _write_settings(mlist: Any, settings: ListSettings) -> None:
        wanted = settings.changed()
        if not wanted:
            return
        config = mlist.settings
        changed = False
        for key, value in wanted.items():
            if config.get(key) != value:
                config[key] = value
                changed = True
        if changed:  # an empty PATCH is pointless
            config.save()

    @staticmethod
    def _write_delivery(member: Any, enabled: bool) -> None:
        preferences = member.preferences
        wanted = DELIVERY_ON if enabled else DELIVERY_OFF
        if preferences.get("delivery_status") != wanted:
            preferences["delivery_status"] = wanted
            preferences.save()

    # --- ListsBackend --------------------------------------------------------------------
    def list_addresses(self, mail_host: str) -> list[str]:
        def run(client: Any) -> list[str]:
            try:
                domain = client.get_domain(mail_host)
            except HTTPError as exc:
                if exc.code == 404:
                    return []
                raise
            return sorted(str(mlist.fqdn_listname) for mlist in domain.lists)

        return self._call(run, missing=f"domain '{mail_host}' not found")

    def get_list(self, address: str) -> ListInfo:
        return self._call(
            lambda client: self._info(self._mailman_list(client, address)),
            missing=f"mailing list '{address}' not found",
        )

    def create_list(self, mail_host: str, list_name: str, settings: ListSettings) -> ListInfo:
        address = f"{list_name}@{mail_host}"

        def run(client: Any) -> ListInfo:
            try:
                domain = client.get_domain(mail_host)
            except HTTPError as exc:
                if exc.code != 404:
                    raise
                try:
                    domain = client.create_domain(mail_host)
                except HTTPError as create_error:
                    if create_error.code != 400:  # 400: created meanwhile
                        raise
                    domain = client.get_domain(mail_host)
            mlist = domain.create_list(list_name)
            try:
                self._write_settings(mlist, settings)
            except (HTTPError, ValueError, MailmanConnectionError):
                self._undo_create(client, address)
                raise
            return self._info(self._mailman_list(client, address))

        return self._call(
            run,
            missing=f"mailing list '{address}' vanished while it was created",
            conflict=f"mailing list '{address}' already exists",
        )

    def _undo_create(self, client: Any, address: str) -> None:
        try:
            client.delete_list(address)
        except (HTTPError, MailmanConnectionError) as exc:
            log.warning("could not delete the half-created list %s: %s", address, _short(exc))

    def update_list(self, address: str, settings: ListSettings) -> ListInfo:
        def run(client: Any) -> ListInfo:
            self._write_settings(self._mailman_list(client, address), settings)
            return self._info(self._mailman_list(client, address))

        return self._call(run, missing=f"mailing list '{address}' not found")

    def delete_list(self, address: str) -> None:
        self._call(
            lambda client: client.delete_list(address),
            missing=f"mailing list '{address}' not found",
        )

    def list_members(self, address: str, role: str | None, offset: int, limit: int) -> MemberPage:
        def run(client: Any) -> MemberPage:
            mlist = self._mailman_list(client, address)
            everyone: list[Any] = []
            for roster in (role,) if role else ("owner", "moderator", "member"):
                rows = mlist.get_roster(roster)
                everyone.extend(sorted(rows, key=lambda m: str(m.rest_data.get("email"))))
            # Delivery needs one request per member: only for the page asked for. A member
            # who left between the roster and that request (a confirmed -leave, say) is
            # no longer one; the list itself is still there.
            page = []
            gone = 0
            for member in everyone[offset : offset + limit]:
                try:
                    page.append(self._member(member))
                except (HTTPError, ValueError) as exc:
                    http = exc if isinstance(exc, HTTPError) else _http_error_of(exc)
                    if http is None or http.code != 404:
                        raise
                    gone += 1
            return MemberPage(items=page, total=len(everyone) - gone)

        return self._call(run, missing=f"mailing list '{address}' not found")

    def add_member(
        self, address: str, email: str, role: str, display_name: str, delivery: bool
    ) -> ListMember:
        def run(client: Any) -> ListMember:
            mlist = self._mailman_list(client, address)
            if role != "member":
                mlist.add_role(role, email, display_name)
                return ListMember(email, role, display_name, None)
            result = mlist.subscribe(
                email,
                display_name or None,
                pre_verified=True,
                pre_confirmed=True,
                pre_approved=True,
            )
            if isinstance(result, dict):  # a pending request instead of a member
                raise Conflict(
                    f"{SERVICE} did not subscribe '{email}' at once but opened a pending "
                    f"request ({_short(result.get('token_owner', 'unknown'))} must act on it)"
                )
            if not delivery:
                self._write_delivery(result, False)
            return ListMember(email, role, display_name, delivery)

        return self._call(
            run,
            missing=f"mailing list '{address}' not found",
            conflict=f"'{email}' is already {_role_text(role)} of mailing list '{address}'",
        )

    def _find(self, mlist: Any, address: str, email: str, role: str) -> Any:
        found = mlist.find_members(address=email, role=role)
        for member in found:
            if str(member.rest_data.get("email", "")).lower() == email:
                return member
        raise NotFound(f"'{email}' is not {_role_text(role)} of mailing list '{address}'")

    def remove_member(self, address: str, email: str, role: str) -> None:
        def run(client: Any) -> None:
            mlist = self._mailman_list(client, address)
            self._find(mlist, address, email, role)
            if role == "member":
                mlist.unsubscribe(email, pre_confirmed=True, pre_approved=True)
            else:
                mlist.remove_role(role, email)

        self._call(run, missing=f"'{email}' is not {_role_text(role)} of mailing list '{address}'")

    def set_delivery(self, address: str, email: str, enabled: bool) -> ListMember:
        def run(client: Any) -> ListMember:
            member = self._find(self._mailman_list(client, address), address, email, "member")
            self._write_delivery(member, enabled)
            current = self._member(member, with_delivery=False)
            return ListMember(current.email, "member", current.display_name, enabled)

        return self._call(run, missing=f"'{email}' is not a member of mailing list '{address}'")

    def held_messages(self, address: str) -> list[HeldMessage]:
        def run(client: Any) -> list[HeldMessage]:
            held = self._mailman_list(client, address).held
            messages = [
                HeldMessage(
                    request_id=int(item.rest_data["request_id"]),
                    sender=str(item.rest_data.get("sender") or ""),
                    subject=str(item.rest_data.get("subject") or ""),
                    reason=str(item.rest_data.get("reason") or ""),
                    received=_parse_time(item.rest_data.get("hold_date")),
                )
                for item in held
            ]
            return sorted(messages, key=lambda message: message.request_id)

        return self._call(run, missing=f"mailing list '{address}' not found")

    def moderate_held(self, address: str, request_id: int, action: str, reason: str | None) -> None:
        def run(client: Any) -> None:
            mlist = self._mailman_list(client, address)
            mlist.moderate_message(request_id, action, reason)

        self._call(run, missing=f"no held message {request_id} on mailing list '{address}'")

    def remove_domain_if_empty(self, mail_host: str) -> None:
        def run(client: Any) -> None:
            try:
                domain = client.get_domain(mail_host)
            except HTTPError as exc:
                if exc.code == 404:
                    return
                raise
            if not domain.lists:  # checked right before: never delete a domain's lists
                client.delete_domain(mail_host)

        self._call(run, missing=f"domain '{mail_host}' not found")


def _role_text(role: str) -> str:
    return {"owner": "an owner", "moderator": "a moderator"}.get(role, "a member")
