#!/usr/bin/python3
"""Renders /etc/mailman3/mailman-web.py for Mailyard: the `settings_local` that Debian's
mailman3-web settings (/usr/share/mailman3-web/settings.py) import last, so every name set
here overrides the package's defaults.

Run by the entrypoint as root at every start: the file holds the database and REST
passwords, the SECRET_KEY and the archiver key; it is root:www-data 0640 and never lands
in a volume or the image. With MAILYARD_WEB_BUILD=1 (image build) secrets are
placeholders: only collectstatic/compress run with it.
"""

import grp
import os
import sys

SECRETS = os.environ.get("MAILYARD_SECRETS_DIR", "/var/lib/mailyard-secrets")
STATE = "/var/lib/mailyard-web"
TARGET = "/etc/mailman3/mailman-web.py"
BUILD = os.environ.get("MAILYARD_WEB_BUILD") == "1"
LEVELS = {
    "debug": "DEBUG",
    "info": "INFO",
    "warning": "WARNING",
    "warn": "WARNING",
    "error": "ERROR",
}


def env(name, default):
    value = os.environ.get(name, "").strip()
    return value or default


def read(path):
    if BUILD:
        return "build-time-placeholder"
    try:
        with open(path, encoding="utf-8") as fp:
            value = fp.read().strip()
    except OSError as exc:
        sys.exit(f"cannot read {path}: {exc}")
    if not value or any(c in value for c in "\r\n"):
        sys.exit(f"{path} is empty or malformed")
    return value


def main():
    hostname = env("MAILYARD_HOSTNAME", "mail.example.com")
    extra_hosts = env("MAILYARD_WEB_ALLOWED_HOSTS", "").replace(",", " ").split()
    # Its name on the `mailman` network, where Mailman core reaches port 8000.
    internal_name = env("MAILYARD_WEB_INTERNAL_NAME", "mailman-web-archive")
    db = {
        "ENGINE": "django.db.backends.mysql",
        "HOST": env("MAILYARD_WEB_DB_HOST", "db"),
        "PORT": env("MAILYARD_WEB_DB_PORT", "3306"),
        "NAME": env("MAILYARD_WEB_DB_NAME", "mailmanweb"),
        "USER": env("MAILYARD_WEB_DB_USER", "mailyard_mailmanweb"),
        "PASSWORD": read(os.path.join(SECRETS, "db-mailmanweb-password")),
        "OPTIONS": {"charset": "utf8mb4", "init_command": "SET sql_mode='STRICT_TRANS_TABLES'"},
        # Reuse connections for a minute instead of one per request.
        "CONN_MAX_AGE": 60,
    }
    rest_url = env("MAILYARD_MAILMAN_REST_URL", "http://mailman-rest:8001")
    rest_user = env("MAILYARD_MAILMAN_REST_USER", "restadmin")
    # Postfix's listener for this interface's mail, on the `webmail` network.
    smtp_host = env("MAILYARD_WEB_SMTP_HOST", "postfix-webmail")
    smtp_port = env("MAILYARD_WEB_SMTP_PORT", "10028")
    from_address = env("MAILYARD_WEB_FROM", f"postorius@{hostname}")
    admin_email = env("MAILYARD_WEB_ADMIN_EMAIL", f"postmaster@{hostname}")
    level = LEVELS.get(env("MAILYARD_LOG_LEVEL", "info").lower(), "INFO")
    for name, value in (("DB port", db["PORT"]), ("SMTP port", smtp_port)):
        if not value.isdigit():
            sys.exit(f"{name} must be a number, got {value!r}")

    # The stack's name, extra names (MAILYARD_WEB_ALLOWED_HOSTS) and the service name
    # Mailman core uses on the internal listener. Other Host headers get 400.
    allowed_hosts = [hostname, *extra_hosts, internal_name]
    settings = {
        "SECRET_KEY": read(os.path.join(STATE, "secret-key")),
        "DEBUG": False,
        "ADMINS": [("Mailyard", admin_email)],
        "ALLOWED_HOSTS": allowed_hosts,
        # nginx passes the Host header as the client sent it (with the published port,
        # which CSRF's Referer check needs); Django checks it against ALLOWED_HOSTS.
        "USE_X_FORWARDED_HOST": False,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_CONTENT_TYPE_NOSNIFF": True,
        "X_FRAME_OPTIONS": "DENY",
        "DATABASES": {"default": db},
        "DEFAULT_AUTO_FIELD": "django.db.models.AutoField",
        "MAILMAN_REST_API_URL": rest_url,
        "MAILMAN_REST_API_USER": rest_user,
        "MAILMAN_REST_API_PASS": read(os.path.join(SECRETS, "mailman-rest-password")),
        "MAILMAN_ARCHIVER_KEY": read(os.path.join(SECRETS, "hyperkitty-api-key")),
        # HyperKitty's archiver API is only reachable on the internal listener (nginx
        # answers 404 for it on the HTTPS port) and every call needs the key; container
        # addresses change on restart, so no address list.
        "MAILMAN_ARCHIVER_FROM": ("*",),
        # Mailman core fetches list templates edited in Postorius from here.
        "POSTORIUS_TEMPLATE_BASE_URL": f"http://{internal_name}:8000",
        "SITE_ID": 1,
        "STATIC_ROOT": "/usr/share/mailyard-web/static",
        "STATIC_URL": "/static/",
        "COMPRESS_OFFLINE": True,
        "HAYSTACK_CONNECTIONS": {
            "default": {
                "ENGINE": "haystack.backends.whoosh_backend.WhooshEngine",
                "PATH": f"{STATE}/fulltext_index",
            }
        },
        # One worker for HyperKitty's background tasks (the default is one per CPU).
        "Q_CLUSTER": {
            "name": "mailyard",
            "workers": 1,
            "timeout": 300,
            "retry": 360,
            "save_limit": 100,
            "orm": "default",
            "poll": 5,
        },
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": smtp_host,
        "EMAIL_PORT": int(smtp_port),
        "EMAIL_USE_TLS": False,
        "DEFAULT_FROM_EMAIL": from_address,
        "SERVER_EMAIL": from_address,
        "EMAILNAME": hostname,
        "ACCOUNT_DEFAULT_HTTP_PROTOCOL": "https",
        "FILTER_VHOST": False,
        "LOGGING": {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {
                "plain": {
                    "format": "%(asctime)s mailman-web.%(name)s[%(process)d] %(levelname)s: "
                    "%(message)s",
                    "datefmt": "%Y-%m-%dT%H:%M:%S",
                }
            },
            "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
            "root": {"handlers": ["console"], "level": "WARNING"},
            "loggers": {
                name: {"handlers": ["console"], "level": level, "propagate": False}
                for name in ("django", "hyperkitty", "postorius", "django_mailman3", "django-q")
            },
        },
    }
    lines = [
        "# Rendered by mailyard-web-render-settings at container start. Do not edit:",
        "# changes are lost at the next start. Settings come from MAILYARD_* variables.",
    ]
    lines += [f"{name} = {value!r}" for name, value in settings.items()]
    write(TARGET, "\n".join(lines) + "\n")


def write(target, text):
    tmp = target + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as fp:
        fp.write(text)
    os.chown(tmp, 0, grp.getgrnam("www-data").gr_gid)
    os.chmod(tmp, 0o640)
    os.replace(tmp, target)


if __name__ == "__main__":
    main()
