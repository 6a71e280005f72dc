#!/usr/bin/python3
"""Renders /etc/mailman3/mailman.cfg for Mailyard from the environment and the secrets.

Run by the entrypoint as root at every start: the file holds the database and REST
passwords and never lands in a volume or the image. It is root:list 0640.
"""

import grp
import importlib.util
import os
import sys
from urllib.parse import quote

SECRETS = os.environ.get("MAILYARD_SECRETS_DIR", "/var/lib/mailyard-secrets")
TARGET = "/etc/mailman3/mailman.cfg"
GUNICORN = "/etc/mailman3/gunicorn.cfg"
HYPERKITTY = "/etc/mailman3/mailman-hyperkitty.cfg"

# Every logger Mailman 3.3 defines; all go to the container's output.
LOGGERS = (
    "archiver",
    "bounce",
    "config",
    "database",
    "debug",
    "error",
    "fromusenet",
    "http",
    "locks",
    "mischief",
    "plugins",
    "runner",
    "smtp",
    "subscribe",
    "task",
    "vette",
)
QUIET_LOGGERS = ("database", "http", "smtp")
LEVELS = {
    "debug": "debug",
    "info": "info",
    "warning": "warning",
    "warn": "warning",
    "error": "error",
}


def env(name, default):
    value = os.environ.get(name, "").strip()
    return value or default


def secret(name):
    path = os.path.join(SECRETS, name)
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
    site_owner = env("MAILYARD_MAILMAN_SITE_OWNER", f"postmaster@{hostname}")
    db_host = env("MAILYARD_MAILMAN_DB_HOST", "db")
    db_port = env("MAILYARD_MAILMAN_DB_PORT", "3306")
    db_name = env("MAILYARD_MAILMAN_DB_NAME", "mailman")
    db_user = env("MAILYARD_MAILMAN_DB_USER", "mailyard_mailman")
    # Postfix's listener for list mail, on the `lists` network (compose.yaml).
    smtp_host = env("MAILYARD_MAILMAN_SMTP_HOST", "postfix-lists")
    smtp_port = env("MAILYARD_MAILMAN_SMTP_PORT", "10027")
    rest_user = env("MAILYARD_MAILMAN_REST_USER", "restadmin")
    # One gunicorn worker (~65 MB each): the controller is the only client.
    rest_workers = env("MAILYARD_MAILMAN_REST_WORKERS", "1")
    level = LEVELS.get(env("MAILYARD_LOG_LEVEL", "info").lower(), "info")
    for name, value in (
        ("SMTP port", smtp_port),
        ("DB port", db_port),
        ("REST workers", rest_workers),
    ):
        if not value.isdigit():
            sys.exit(f"{name} must be a number, got {value!r}")

    # Percent-quoting also keeps '$' away from Mailman's own $variable expansion of the URL.
    url = "mysql+pymysql://{}:{}@{}:{}/{}?charset=utf8mb4&use_unicode=1".format(
        quote(db_user, safe=""),
        quote(secret("db-mailman-password"), safe=""),
        db_host,
        db_port,
        quote(db_name, safe=""),
    )

    def logger_level(name):
        # Below debug, three loggers stay at warning: `database` echoes every SQL
        # statement at info, `http` every REST request and `smtp` (which also carries
        # aiosmtpd's LMTP session log) every connection, health checks included.
        if level == "info" and name in QUIET_LOGGERS:
            return "warning"
        return level

    def logger_format(name):
        # Mailman hands the http format to gunicorn as its access-log format, which
        # knows gunicorn's atoms only (unknown ones become '-', breaking %d).
        if name == "http":
            return '%(t)s mailman.http: %(h)s "%(r)s" %(s)s %(b)s %(L)ss "%(a)s"'
        return f"%(asctime)s mailman.{name}[%(process)d]: %(message)s"

    # HyperKitty archiver (optional web interface, compose profile "web"): only when
    # MAILYARD_HYPERKITTY_URL is set; needs the python3-mailman-hyperkitty package and the
    # shared key `hyperkitty-api-key` in the secrets directory. Unset: no archiver.
    hyperkitty_url = env("MAILYARD_HYPERKITTY_URL", "")
    archiver = ""
    if hyperkitty_url:
        if importlib.util.find_spec("mailman_hyperkitty") is None:
            sys.exit(
                "MAILYARD_HYPERKITTY_URL is set but python3-mailman-hyperkitty is not installed"
            )
        if not hyperkitty_url.endswith("/"):
            hyperkitty_url += "/"
        archiver = f"""
[archiver.hyperkitty]
class: mailman_hyperkitty.Archiver
enable: yes
configuration: {HYPERKITTY}
"""
        write(
            HYPERKITTY,
            f"""\
# Rendered by mailyard-mailman-render-config (MAILYARD_HYPERKITTY_URL).
[general]
base_url: {hyperkitty_url}
api_key: {secret("hyperkitty-api-key")}
""",
        )

    logging = "".join(
        f"\n[logging.{name}]\npath: /dev/stdout\n"
        f"format: {logger_format(name)}\n"
        f"datefmt: %Y-%m-%dT%H:%M:%S\n"
        f"level: {logger_level(name)}\n"
        for name in LOGGERS
    )

    text = f"""\
# Rendered by mailyard-mailman-render-config at container start. Do not edit: changes are
# lost at the next start. Settings come from MAILYARD_* environment variables.
[mailman]
site_owner: {site_owner}
layout: mailyard
default_language: en

[paths.mailyard]
var_dir: /var/lib/mailman3
queue_dir: $var_dir/queue
bin_dir: /usr/lib/mailman3/bin
list_data_dir: $var_dir/lists
log_dir: /var/log/mailman3
# Locks and the PID file are per container run: a restart never finds a stale lock.
lock_dir: /run/mailman3/locks
data_dir: $var_dir/data
cache_dir: $var_dir/cache
etc_dir: /etc/mailman3
ext_dir: $var_dir/ext
messages_dir: $var_dir/messages
archive_dir: $var_dir/archives
template_dir: $var_dir/templates
pid_file: /run/mailman3/master.pid
lock_file: $lock_dir/master.lck

[database]
class: mailman.database.mysql.MySQLDatabase
url: {url}

[webservice]
# On the `mailman` network only (the controller, the web interface); the entrypoint maps
# the name to that address (images/common/bind-names.sh).
hostname: mailman-rest
port: 8001
use_https: no
show_tracebacks: no
api_version: 3.1
admin_user: {rest_user}
admin_pass: {secret("mailman-rest-password")}
workers: {rest_workers}
configuration: {GUNICORN}

[mta]
# Postfix routes list addresses with live SQL lookups on Mailman's `mailinglist`
# table: no transport files, no postmap.
incoming: mailman.mta.null.NullMTA
outgoing: mailman.mta.deliver.deliver
smtp_host: {smtp_host}
smtp_port: {smtp_port}
smtp_user:
smtp_pass:
smtp_secure_mode: smtp
# On the `lists` network only (Postfix).
lmtp_host: mailman-lists
lmtp_port: 8024

# No NNTP gateway.
[runner.nntp]
start: no
{archiver}{logging}"""

    # Gunicorn logs every REST request (health checks included) whatever the level of the
    # http logger: the access log goes to the output only at debug level.
    access_log = "/dev/stdout" if level == "debug" else "/dev/null"
    write(
        GUNICORN,
        f"""\
# Rendered by mailyard-mailman-render-config (Mailman's defaults plus the access log).
[gunicorn]
graceful_timeout = 30
timeout = 360
accesslog = {access_log}
""",
    )
    write(TARGET, text)


def write(target, text):
    tmp = target + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    with os.fdopen(fd, "w", encoding="utf-8") as fp:
        fp.write(text)
    os.chown(tmp, 0, grp.getgrnam("list").gr_gid)
    os.chmod(tmp, 0o640)
    os.replace(tmp, target)


if __name__ == "__main__":
    main()
