"""The TLS policy every listener of the stack shares (docs/security.md, "TLS").

Where TLS is mandatory (submission on 465 and 587, IMAPS, POP3S, STARTTLS on 143, 110
and 4190, the API on 443) only TLS 1.2 and 1.3 with forward-secret AEAD suites are
offered: no CBC (LUCKY13), no anonymous, export, RC4, 3DES or NULL suites, which is what
testssl.sh rates as clean (tests/stack/test_tls_scan.py). Port 25 is opportunistic: a
sending server that cannot use these would otherwise fall back to plain text, so it
also accepts the TLS 1.2 CBC suites with SHA-1/SHA-2 MACs (MEDIUM grade), but never the
anonymous or broken ones.
"""

from __future__ import annotations

# OpenSSL cipher string for TLS 1.2 on the mandatory-TLS listeners (TLS 1.3 suites are
# all AEAD and forward secret: OpenSSL's defaults stay).
MANDATORY_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20"
# Never offered anywhere, port 25 included (Postfix smtpd_tls_exclude_ciphers).
EXCLUDED_CIPHERS = (
    "aNULL",
    "eNULL",
    "EXPORT",
    "DES",
    "3DES",
    "RC4",
    "MD5",
    "PSK",
    "SRP",
    "IDEA",
    "SEED",
    "kRSA",
)
