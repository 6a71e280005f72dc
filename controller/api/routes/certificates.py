"""/api/v1/certificates: the certificate Postfix and Dovecot serve (never its key)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from controller.api.deps import PrincipalDep
from controller.engine.certificates import CertificateManager

router = APIRouter(prefix="/certificates", tags=["certificates"])


def get_manager(request: Request) -> CertificateManager:
    manager: CertificateManager = request.app.state.certificates
    return manager


ManagerDep = Annotated[CertificateManager, Depends(get_manager)]


@router.get("")
def certificate_status(manager: ManagerDep, principal: PrincipalDep) -> dict[str, Any]:
    """Names, issuer, serial, validity, next renewal, last error."""
    principal.require_admin("read the certificate status")
    return manager.status()


@router.post("/renew")
def renew_certificate(manager: ManagerDep, principal: PrincipalDep) -> dict[str, Any]:
    """Get a new certificate from the ACME CA now, deploy it with health-gated reloads
    and check every TLS port serves it. 503 (old certificate kept) when that fails."""
    principal.require_admin("renew the certificate")
    principal.require_write()
    return manager.renew(actor=principal.name, force=True)


class CustomCertificate(BaseModel):
    certificate_chain: str = Field(
        max_length=100_000, description="PEM: the certificate first, then intermediates."
    )
    private_key: str = Field(
        max_length=20_000, repr=False, description="PEM, unencrypted. Never returned."
    )


@router.put("/custom")
def install_custom_certificate(
    manager: ManagerDep, principal: PrincipalDep, body: CustomCertificate
) -> dict[str, Any]:
    """Bring your own certificate: it must match its key, be valid now and cover the
    hostname (422 otherwise); then it is deployed like an issued one."""
    principal.require_admin("install a certificate")
    principal.require_write()
    return manager.install_custom(
        body.certificate_chain.encode(), body.private_key.encode(), actor=principal.name
    )
