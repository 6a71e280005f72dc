#!/bin/bash
# Generates a throwaway test root and Pebble's HTTPS certificate (names pebble, localhost,
# 127.0.0.1), publishes the root's certificate in the shared volume, starts Pebble with
# Docker's embedded DNS as its resolver, then also publishes Pebble's issuing root.
#
# Environment (all optional):
#   PEBBLE_CA_DIR                   where the public PEM files go (default /var/lib/pebble-ca)
#   PEBBLE_CERT_VALIDITY_SECONDS    lifetime of issued certificates (default from
#                                   pebble-config.json: 7776000 = 90 days)
#   PEBBLE_DNS_SERVER               resolver for validation (default 127.0.0.11:53)
set -euo pipefail

ca_dir=${PEBBLE_CA_DIR:-/var/lib/pebble-ca}
tls_dir=/run/pebble/tls
config=/run/pebble/pebble-config.json
mkdir -p "$ca_dir" "$tls_dir"
chmod 0700 "$tls_dir"

# A fresh key pair on every start: the private keys never leave this container.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
  -subj "/CN=Mailyard test ACME server root" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -addext "subjectKeyIdentifier=hash" \
  -keyout "$tls_dir/root.key" -out "$tls_dir/root.pem" 2>/dev/null
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
  -subj "/CN=pebble" -keyout "$tls_dir/server.key" -out "$tls_dir/server.csr" 2>/dev/null
cat > "$tls_dir/server.ext" <<'EXT'
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:pebble,DNS:localhost,IP:127.0.0.1
subjectKeyIdentifier=hash
authorityKeyIdentifier=keyid
EXT
openssl x509 -req -in "$tls_dir/server.csr" -CA "$tls_dir/root.pem" -CAkey "$tls_dir/root.key" \
  -CAcreateserial -days 30 -extfile "$tls_dir/server.ext" -out "$tls_dir/server.pem" 2>/dev/null
rm -f "$tls_dir/root.key" "$tls_dir/server.csr" "$tls_dir/root.srl"

# Replace atomically: a reader never sees a half-written file.
rm -f "$ca_dir/issuer-root.pem"
install -m 0644 "$tls_dir/root.pem" "$ca_dir/.ca.pem.tmp"
mv -f "$ca_dir/.ca.pem.tmp" "$ca_dir/ca.pem"

cp /etc/pebble/pebble-config.json "$config"
if [[ -n ${PEBBLE_CERT_VALIDITY_SECONDS:-} ]]; then
  [[ $PEBBLE_CERT_VALIDITY_SECONDS =~ ^[1-9][0-9]*$ ]] \
    || { echo "PEBBLE_CERT_VALIDITY_SECONDS must be a positive integer" >&2; exit 1; }
  sed -i -E "s/(\"certificateValidityPeriod\": *)[0-9]+/\1$PEBBLE_CERT_VALIDITY_SECONDS/" "$config"
fi

/usr/bin/pebble -config "$config" -dnsserver "${PEBBLE_DNS_SERVER:-127.0.0.11:53}" &
pebble_pid=$!

# Pebble makes a new issuing root on every start; publish it (for tests that verify the
# chain of an issued certificate). The healthcheck waits for this file.
for _ in $(seq 150); do
  if curl -fsS --cacert "$ca_dir/ca.pem" -o "$tls_dir/issuer-root.pem" \
       https://localhost:15000/roots/0 2>/dev/null; then
    install -m 0644 "$tls_dir/issuer-root.pem" "$ca_dir/.issuer-root.pem.tmp"
    mv -f "$ca_dir/.issuer-root.pem.tmp" "$ca_dir/issuer-root.pem"
    break
  fi
  kill -0 "$pebble_pid" 2>/dev/null || break
  sleep 0.2
done

wait "$pebble_pid"
