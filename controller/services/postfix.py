"""Postfix: the files Mailyard renders for it.

Contract with images/postfix: group id 200 is `postfix` (SQL maps are root:postfix
0640 because they hold the database password), config appears at
/etc/mailyard/postfix/current.
"""

from __future__ import annotations

from controller.services.rendering import TemplateFile

SERVICE = "postfix"
POSTFIX_GID = 200

SQL_MAPS = (
    "virtual_mailbox_domains",
    "virtual_mailbox_maps",
    "virtual_alias_domains",
    "virtual_alias_maps",
    "alias_domain_maps",
    "alias_domain_catchall_maps",
    "relay_domains",
    "transport_maps",
    "sender_login_maps",
)

TEMPLATES: tuple[TemplateFile, ...] = (
    TemplateFile("main.cf.j2", "main.cf"),
    TemplateFile("master.cf.j2", "master.cf"),
    *(
        TemplateFile(f"sql/{name}.cf.j2", f"sql/{name}.cf", mode=0o640, gid=POSTFIX_GID)
        for name in SQL_MAPS
    ),
)
