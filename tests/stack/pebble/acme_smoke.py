"""Manual smoke test of Pebble's real HTTP-01 validation (not collected by pytest).

Serves the key authorizations from a running container (the controller), via
`python3 -m http.server 80` there, and asks Pebble for one certificate. Needs the `acme`
package in a scratch venv (not in the project's .venv). See README.md in this folder.

    python acme_smoke.py --directory https://127.0.0.1:PORT/dir --ca-file ca.pem \
        --container CONTROLLER_ID [--not-after SECONDS] [--skip-token NAME] NAME...

Exit 0: issued; 2: validation failed (expected with --skip-token or an unknown name).
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time

import josepy as jose
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

WEBROOT = "/run/acme-smoke-www"  # in the container, not on this host


class OrderWithWindow(messages.NewOrder):
    """newOrder with RFC 8555's optional notAfter, which Pebble 2.4.0 honours."""

    not_after: str = jose.field("notAfter", omitempty=True)


def docker_exec(container: str, script: str, data: bytes = b"", *, detach: bool = False) -> None:
    flags = ["-d"] if detach else ["-i"]
    subprocess.run(
        ["docker", "exec", *flags, container, "sh", "-c", script], input=data, check=True
    )


def new_order(
    acme: client.ClientV2, names: list[str], csr_pem: bytes, not_after: int | None
) -> messages.OrderResource:
    if not not_after:
        return acme.new_order(csr_pem)
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=not_after)
    identifiers = [messages.Identifier(typ=messages.IDENTIFIER_FQDN, value=n) for n in names]
    request = OrderWithWindow(
        identifiers=identifiers, not_after=until.replace(microsecond=0).isoformat()
    )
    response = acme._post(acme.directory["newOrder"], request)
    body = messages.Order.from_json(response.json())
    authorizations = [
        acme._authzr_from_response(acme._post_as_get(url), uri=url) for url in body.authorizations
    ]
    return messages.OrderResource(
        body=body,
        uri=response.headers.get("Location"),
        authorizations=authorizations,
        csr_pem=csr_pem,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--directory", required=True)
    parser.add_argument("--ca-file", required=True, help="ca.pem from the pebble-ca volume")
    parser.add_argument("--container", required=True, help="serves port 80 for the names")
    parser.add_argument("--not-after", type=int, help="ask for this lifetime in seconds")
    parser.add_argument("--skip-token", action="append", default=[], metavar="NAME")
    parser.add_argument("--out", help="write the full chain here")
    parser.add_argument("names", nargs="+")
    args = parser.parse_args()
    os.environ["REQUESTS_CA_BUNDLE"] = args.ca_file

    docker_exec(
        args.container,
        # Exits at once if port 80 is taken already (an earlier run): harmless then.
        f"mkdir -p {WEBROOT}/.well-known/acme-challenge && "
        f"exec python3 -m http.server 80 --directory {WEBROOT} >/dev/null 2>&1",
        detach=True,
    )
    time.sleep(1)

    account_key = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
    net = client.ClientNetwork(account_key, alg=jose.ES256, user_agent="mailyard-smoke")
    directory = messages.Directory.from_json(net.get(args.directory).json())
    print("directory:", sorted(directory.to_partial_json()))
    acme = client.ClientV2(directory, net)
    acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))

    key_pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    csr_pem = crypto_util.make_csr(key_pem, args.names)
    order = new_order(acme, args.names, csr_pem, args.not_after)

    for authz in order.authorizations:
        name = authz.body.identifier.value
        challb = next(c for c in authz.body.challenges if isinstance(c.chall, challenges.HTTP01))
        response, validation = challb.response_and_validation(account_key)
        token = challb.chall.encode("token")
        if name not in args.skip_token:
            path = f"{WEBROOT}/.well-known/acme-challenge/{token}"
            docker_exec(args.container, f"cat > {path}", validation.encode())
        print(f"http-01 for {name}: token {token}")
        acme.answer_challenge(challb, response)

    deadline = datetime.datetime.now() + datetime.timedelta(seconds=60)
    try:
        order = acme.poll_and_finalize(order, deadline)
    except errors.ValidationError as error:
        for authz in error.failed_authzrs:
            for challb in authz.body.challenges:
                if challb.error:
                    print(f"validation failed for {authz.body.identifier.value}: {challb.error}")
        return 2

    chain = x509.load_pem_x509_certificates(order.fullchain_pem.encode())
    leaf = chain[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    print("issued for", names.get_values_for_type(x509.DNSName))
    print(
        f"  notBefore {leaf.not_valid_before_utc} notAfter {leaf.not_valid_after_utc}"
        f" (lifetime {leaf.not_valid_after_utc - leaf.not_valid_before_utc})"
    )
    for cert in chain:
        print(f"  {cert.subject.rfc4514_string()} <- {cert.issuer.rfc4514_string()}")
    if args.out:
        with open(args.out, "w") as out:
            out.write(order.fullchain_pem)
    return 0


if __name__ == "__main__":
    sys.exit(main())
