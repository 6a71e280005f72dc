"""/api/v1/domains/{name}/dkim and /api/v1/domains/{name}/dns

Admin and domain-scoped tokens (a scoped token manages the keys of its own domains; out
of scope answers 404 like everything else). Private keys are never returned.
"""

from __future__ import annotations

import logging
from typing import Annotated, Literal

from fastapi import APIRouter, Body, Header, Query, Request, Response, status
from fastapi.responses import PlainTextResponse
from starlette.convertors import StringConvertor, register_url_convertor

from controller.api.deps import ContextDep
from controller.api.schemas import DkimKeyPublic, DkimKeys, DkimRotate, DnsRecordPublic, DnsRecords
from controller.domain import dkim, dns_records
from controller.engine.apply import ConfigEngine

log = logging.getLogger(__name__)

router = APIRouter(prefix="/domains", tags=["dkim", "dns"])


class SelectorConvertor(StringConvertor):
    """A selector in a path: one segment, never `rotate`, so `/dkim/rotate` is only the
    rotate operation (405 with Allow: POST for other methods), not also a key to delete."""

    regex = "(?!rotate$)[^/]+"


register_url_convertor("selector", SelectorConvertor())


@router.get("/{name}/dkim")
def list_dkim_keys(ctx: ContextDep, name: str) -> DkimKeys:
    domain, keys = dkim.list_keys(ctx, name)
    return DkimKeys(domain=domain.name, keys=[DkimKeyPublic.model_validate(key) for key in keys])


@router.post("/{name}/dkim/rotate", status_code=status.HTTP_201_CREATED)
def rotate_dkim_key(
    ctx: ContextDep,
    name: str,
    body: Annotated[DkimRotate | None, Body()] = None,
) -> DkimKeyPublic:
    """A new key, `published`: put its record in DNS, wait for it to be visible, then
    activate it. A domain without an active key gets the new key active at once."""
    key = dkim.rotate(ctx, name, body.algorithm if body else None)
    return DkimKeyPublic.model_validate(key)


@router.post("/{name}/dkim/{selector:selector}/activate")
def activate_dkim_key(ctx: ContextDep, name: str, selector: str) -> DkimKeyPublic:
    """Sign with this key from the next message on; the previous key becomes `retired`."""
    key = dkim.activate(ctx, name, selector)
    return DkimKeyPublic.model_validate(key)


@router.delete("/{name}/dkim/{selector:selector}", status_code=status.HTTP_204_NO_CONTENT)
def delete_dkim_key(ctx: ContextDep, name: str, selector: str) -> Response:
    """Delete a key that does not sign, and its private key file (422 for the active key)."""
    dkim.delete_key(ctx, name, selector)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get(
    "/{name}/dns",
    response_model=DnsRecords,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def dns(
    request: Request,
    ctx: ContextDep,
    name: str,
    format: Annotated[
        Literal["json", "zone"] | None,
        Query(description="json (default) or zone (zone-file text)."),
    ] = None,
    accept: Annotated[str, Header()] = "",
) -> Response | DnsRecords:
    """What to publish in DNS for this domain: MX, SPF, DKIM, DMARC, autoconfig,
    autodiscover and SRV records, plus advice for the host's A/AAAA/PTR records. As JSON,
    or as zone-file text with `?format=zone` or `Accept: text/plain`."""
    domain, keys = dkim.list_keys(ctx, name)
    engine: ConfigEngine = request.app.state.config
    mail = engine.current_settings()
    records = dns_records.domain_records(
        domain.name,
        mail.hostname,
        [dns_records.DkimRecordInput(k.selector, k.algorithm, k.public_key, k.state) for k in keys],
        protocols=list(mail.dovecot_protocols),
        ipv4=engine.settings.public_ipv4 or None,
        ipv6=engine.settings.public_ipv6 or None,
    )
    wants_text = format == "zone" or (
        format is None and "text/plain" in accept and "application/json" not in accept
    )
    if wants_text:
        return PlainTextResponse(dns_records.zone_text(domain.name, records))
    return DnsRecords(
        domain=domain.name,
        hostname=mail.hostname,
        records=[DnsRecordPublic.model_validate(record) for record in records],
    )
