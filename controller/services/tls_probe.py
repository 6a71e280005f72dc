"""Which certificate a port serves, read on the wire (the leaf's serial number)."""

from __future__ import annotations

import smtplib
import socket
import ssl

from cryptography import x509

from controller.services.managed import TlsMode as Mode


def _context() -> ssl.SSLContext:
    # We compare what is served with what we installed; trust is not the question here.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def served_serial(host: str, port: int, mode: Mode, timeout: float = 30.0) -> str:
    """The serial (hex) of the leaf certificate served on host:port."""
    if mode == "smtp-starttls":
        # Port 25 is behind postscreen: a new client waits its greet delay (about 6 s).
        with smtplib.SMTP(host, port, timeout=timeout) as client:
            client.ehlo("certificate-check.mailyard.invalid")
            client.starttls(context=_context())
            sock = client.sock
            der = sock.getpeercert(binary_form=True) if isinstance(sock, ssl.SSLSocket) else None
    else:
        with (
            socket.create_connection((host, port), timeout=timeout) as raw,
            _context().wrap_socket(raw) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    if not der:
        raise OSError(f"{host}:{port} presented no certificate")
    return f"{x509.load_der_x509_certificate(der).serial_number:X}"
