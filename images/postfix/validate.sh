#!/bin/bash
# Checks a staged Postfix release with Postfix's own tools before it goes live:
#   mailyard-postfix-validate RELEASE_DIR PROBE_NAME
# Output lines: "ERROR <text>", "WARNING <text>", "PROBE-FAILED <parameter>".
# Exit 0 when the release may go live, 1 when it must not.
set -uo pipefail
dir=${1:?release directory}
probe=${2:?probe name}
[[ $dir == /etc/mailyard/postfix/releases/* && -f $dir/main.cf ]] || { echo "ERROR no release at $dir"; exit 1; }
[[ $probe =~ ^mailyard-probe-[0-9a-f]+$ ]] || { echo "ERROR bad probe name"; exit 1; }
status=0

# 1. postfix check: syntax, files, ownership. Releases belong to the controller's user
# (uid 990, another container), never root, on a volume mounted read-only here: nobody in
# this container can change them, so "not owned by root" for them is no finding.
checked=0
output=$(MAIL_CONFIG=$dir postfix check 2>&1) || checked=$?
output=$(grep -v "warning: not owned by root: $dir/" <<<"$output" || true)
if [ "$checked" -ne 0 ]; then
  status=1
  while IFS= read -r line; do echo "ERROR $line"; done <<<"$output"
elif [ -n "$output" ]; then
  while IFS= read -r line; do echo "WARNING $line"; done <<<"$output"
fi

# 2. postconf -n: unknown or misspelt parameter names are reported as warnings.
while IFS= read -r line; do
  [ -n "$line" ] && echo "WARNING $line"
done < <(MAIL_CONFIG=$dir postconf -n 2>&1 >/dev/null)

# 3. A real smtpd, reading the staged main.cf, evaluates each restriction list for a
# stranger (XCLIENT) at RCPT time, one list at a time so an early reject in one list
# cannot hide an unknown name in another. It runs as the postfix user: run as root,
# smtpd treats stdin as `sendmail -bs` and skips restrictions. Nothing is queued: the
# session ends before DATA, and notify_classes is empty so no postmaster notice is sent.
# The probe writes its whole session at once: smtpd must not hang up on that pipelining.
# Lookups go straight to MariaDB with the staged map files instead of through proxymap:
# the running proxymap serves only the tables of the live configuration, and a new
# release may add one (e.g. the mailing list lookup).
direct=()
for map in virtual_mailbox_domains virtual_mailbox_maps virtual_alias_domains virtual_alias_maps \
    relay_domains transport_maps smtpd_sender_login_maps; do
  value=$(MAIL_CONFIG=$dir postconf -h "$map" 2>/dev/null) || continue
  direct+=(-o "$map=${value//proxy:/}")
done
# The restriction lists themselves may name proxy: tables that the running proxymap
# does not serve yet (e.g. the hosted-sender check): the probe reads those directly too.
session=$'EHLO probe.mailyard.invalid\r\nXCLIENT ADDR=192.0.2.1 NAME=probe.mailyard.invalid\r\nEHLO probe.mailyard.invalid\r\nMAIL FROM:<probe@mailyard.invalid>\r\nRCPT TO:<probe@mailyard.invalid>\r\nQUIT\r\n'
for parameter in smtpd_client_restrictions smtpd_helo_restrictions smtpd_sender_restrictions smtpd_recipient_restrictions; do
  value=$(MAIL_CONFIG=$dir postconf -h "$parameter" 2>/dev/null) || continue
  [ -n "$value" ] || continue
  replies=$(printf '%s' "$session" | MAIL_CONFIG=$dir setpriv --reuid=postfix --regid=postfix --init-groups \
    /usr/lib/postfix/sbin/smtpd -S -n "$probe" -t unix \
      -o "syslog_name=postfix/$probe" \
      "${direct[@]}" \
      -o notify_classes= \
      -o smtpd_forbid_unauth_pipelining=no \
      -o smtpd_tls_security_level=none \
      -o smtpd_authorized_xclient_hosts=127.0.0.0/8 \
      -o smtpd_relay_restrictions=defer_if_permit \
      -o smtpd_client_restrictions= \
      -o smtpd_helo_restrictions= \
      -o smtpd_sender_restrictions= \
      -o "smtpd_recipient_restrictions=${value//proxy:/}" 2>&1)
  if grep -q "4.3.5 Server configuration error" <<<"$replies" || ! grep -q "^221 " <<<"$replies"; then
    # The reasons are in smtpd's log lines (postlogd), which the controller reads.
    echo "PROBE-FAILED $parameter"
    status=1
  fi
done
# 4. policyd-rate-limit reads its own file: let it parse the staged one (as its own user,
# so it only reads and prints; the running daemon is restarted by mailyard-postfix-reload).
if [ -f "$dir/policyd-rate-limit.yaml" ]; then
  if ! output=$(setpriv --reuid=policyd-rate-limit --regid=policyd-rate-limit --clear-groups \
      policyd-rate-limit -f "$dir/policyd-rate-limit.yaml" --get-config limits 2>&1); then
    status=1
    while IFS= read -r line; do echo "ERROR policyd-rate-limit.yaml: $line"; done <<<"$output"
  fi
fi
# 5. Every TCP listener must be one the master can open: `postfix check` accepts an
# address this container does not have, and the reload would then stop the master and
# cut every session (listen_check.py).
if ! output=$(mailyard-postfix-listen-check "$dir"); then
  status=1
  printf '%s\n' "$output"
fi
exit $status
