#!/usr/bin/python3
"""Healthy when HTTPS on 8443 serves Postorius's list index (200: nginx with the
certificate, uWSGI, Django, and Mailman core's REST API behind it) and HyperKitty's index
(200: its database). Certificate verification is off: the name is checked, not the CA."""

import http.client
import os
import ssl
import sys

host = os.environ.get("MAILYARD_HOSTNAME", "").strip() or "mail.example.com"
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
for path in ("/postorius/lists/", "/hyperkitty/"):
    connection = http.client.HTTPSConnection("127.0.0.1", 8443, timeout=8, context=context)
    try:
        connection.request("GET", path, headers={"Host": host})
        status = connection.getresponse().status
    except OSError as exc:
        sys.exit(f"{path}: {exc}")
    finally:
        connection.close()
    if status != 200:
        sys.exit(f"{path}: HTTP {status}")
