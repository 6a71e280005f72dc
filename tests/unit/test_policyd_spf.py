"""templates/postfix/policyd-spf.conf.j2: the options of postfix-policyd-spf-python for
each spf_action. What the daemon then answers (550 on Fail, a Received-SPF header) is
proven against the real package and the test DNS server (tests/stack/dns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from controller.domain.mail_settings import MailSettings
from controller.services.rendering import TemplateFile, render_release

REPO = Path(__file__).resolve().parents[2]


def _conf(**settings: Any) -> dict[str, str]:
    mail = MailSettings.model_validate({"hostname": "mail.example.com", **settings})
    release = render_release(
        REPO / "templates",
        "postfix",
        [TemplateFile("policyd-spf.conf.j2", "policyd-spf.conf")],
        {"s": mail},
    )
    values: dict[str, str] = {}
    for line in release.files[0].content.decode().splitlines():
        if line.strip() and not line.startswith("#"):
            key, separator, value = line.partition(" = ")
            assert separator, f"not a `key = value` line: {line!r}"
            assert key not in values, f"{key} set twice"
            values[key] = value
    return values


@pytest.mark.parametrize(
    ("action", "helo", "mail_from"),
    [("reject", "Fail", "Fail"), ("tag", "False", "False"), ("off", "No_Check", "No_Check")],
)
def test_each_action(action: str, helo: str, mail_from: str) -> None:
    conf = _conf(spf_action=action)
    assert (conf["HELO_reject"], conf["Mail_From_reject"]) == (helo, mail_from)
    # Never a dry run, never lost mail over broken records or DNS trouble.
    assert conf["TestOnly"] == "1"
    assert conf["PermError_reject"] == "False"
    assert conf["TempError_Defer"] == "False"
    assert conf["Header_Type"] == "SPF"


def test_trusted_networks_are_skipped() -> None:
    conf = _conf(mynetworks=["127.0.0.0/8", "10.20.0.0/16"])
    assert conf["skip_addresses"].split(",") == [
        "127.0.0.0/8",
        "::ffff:127.0.0.0/104",
        "::1",
        "10.20.0.0/16",
    ]
