#!/usr/bin/python3
"""Idempotent start-up state for Mailyard's web interface (run as www-data after
`migrate`): the Django site's domain and name, the superuser, and the web host of every
Mailman domain.

`--domains` (run every 5 minutes by uWSGI) only maps Mailman domains that have no web
host yet to this site (django_mailman3's MailDomain): HyperKitty builds the archive links
it hands Mailman (Archived-At, List-Archive) from it, and would use the mail domain itself
(https://<list domain>/...) for domains created through the controller otherwise.

The superuser (MAILYARD_WEB_ADMIN_USER, default `admin`) is created once with
MAILYARD_WEB_ADMIN_PASSWORD (from the environment or the generated file, handed over by
the entrypoint) and its e-mail address marked verified (allauth would otherwise send a
verification mail before the first login). An existing account is never changed, so a
password changed in the web interface stays.
"""

import os
import sys

sys.path.insert(0, "/usr/share/mailman3-web")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "settings")

import django

django.setup()

from allauth.account.models import EmailAddress  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.sites.models import Site  # noqa: E402
from django_mailman3.lib.mailman import get_mailman_client  # noqa: E402
from django_mailman3.models import MailDomain  # noqa: E402

hostname = os.environ.get("MAILYARD_HOSTNAME", "").strip() or "mail.example.com"
# What users type: the hostname, with the port when it is not 443.
web_host = os.environ.get("MAILYARD_WEB_SITE_DOMAIN", "").strip() or hostname
site, _ = Site.objects.get_or_create(pk=1, defaults={"domain": web_host, "name": hostname})
if "--domains" not in sys.argv and (site.domain != web_host or site.name != hostname):
    site.domain, site.name = web_host, hostname
    site.save()

try:
    for domain in get_mailman_client().domains:
        _, created = MailDomain.objects.get_or_create(
            mail_domain=domain.mail_host, defaults={"site": site}
        )
        if created:
            print(f"web host of {domain.mail_host}: {site.domain}")
except Exception as exc:  # noqa: BLE001 - Mailman core down: the next round retries
    print(f"cannot list Mailman's domains: {exc}")
if "--domains" in sys.argv:
    sys.exit(0)

user_name = os.environ.get("MAILYARD_WEB_ADMIN_USER", "").strip() or "admin"
email = os.environ.get("MAILYARD_WEB_ADMIN_EMAIL", "").strip() or f"postmaster@{hostname}"
password = os.environ.get("MAILYARD_WEB_ADMIN_PASSWORD", "")
User = get_user_model()
if not User.objects.filter(username=user_name).exists():
    if not password:
        sys.exit("no password for the web interface's superuser")
    user = User.objects.create_superuser(user_name, email, password)
    EmailAddress.objects.update_or_create(
        user=user, email=email, defaults={"verified": True, "primary": True}
    )
    print(f"created the superuser {user_name!r} <{email}>")
