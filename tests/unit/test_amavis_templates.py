"""templates/amavis and controller/services/amavis.py: the rendered amavisd.conf.

Whether amavisd really loads, scans, quarantines and tempfails with this file is proven
against the real images (the stack tests); these tests pin the parts of the contract
(docs/design/filter-chain.md) that the text of the file decides.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from controller.domain.mail_settings import MailSettings, build
from controller.runtime import ExecResult, Replica
from controller.services import amavis
from controller.services.rendering import Release, ReleaseStore, render_release

TEMPLATES_DIR = Path(__file__).resolve().parents[2] / "templates"
MODES = ("full", "no-clamav", "off")
BANNED_CATEGORIES = {
    "executables",
    "scripts",
    "office-macros",
    "double-extensions",
    "archives-encrypted",
}


def _mail(**stored: Any) -> MailSettings:
    return build(stored, {"hostname": "mail.example.com", "relayhost": ""})


def _context(mode: str = "full", **overrides: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "s": _mail(filter_spam_network_tests=False),
        "db_host": "db",
        "db_name": "mailyard",
        "db_user": amavis.DB_USER,
        "db_password": "am-secret-0123456789",
        "filter_mode": mode,
        "clamd_host": "clamav-scan",
        "clamd_port": amavis.CLAMD_PORT,
        "reinject_host": "postfix-filter",
        "reinject_port": 10025,
        "filter_listen": amavis.FILTER_LISTEN_NAME,
        "control_listen": amavis.CONTROL_LISTEN_NAME,
        "inbound_port": amavis.INBOUND_PORT,
        "originating_port": amavis.ORIGINATING_PORT,
        "pdp_port": amavis.PDP_PORT,
        "network_tables_dir": amavis.NETWORK_TABLES_DIR,
    }
    context.update(overrides)
    return context


def _release(mode: str = "full", **overrides: Any) -> Release:
    return render_release(
        TEMPLATES_DIR, amavis.SERVICE, amavis.TEMPLATES, _context(mode, **overrides)
    )


def _conf(mode: str = "full", **overrides: Any) -> str:
    (item,) = _release(mode, **overrides).files
    assert item.path == "amavisd.conf"
    return item.content.decode()


def _code(text: str) -> str:
    """The Perl without comment lines, so a comment cannot satisfy an assertion."""
    return "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))


def _assignment(text: str, name: str) -> str:
    """The right-hand side of the (last) top-level `name = ...;` statement."""
    statement = rf"^{re.escape(name)}\s*=\s*(.*?);[ \t]*(?:#[^\n]*)?$"
    found = re.findall(statement, _code(text), re.MULTILINE | re.S)
    assert found, f"{name} is not set"
    return str(found[-1]).strip()


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_renders_a_complete_perl_file(mode: str) -> None:
    text = _conf(mode)
    assert "{{" not in text
    assert "{%" not in text
    assert _code(text).rstrip().endswith("1;  # the file must end in a true value")
    assert "use strict;" in text
    assert _assignment(text, "$myhostname") == "'mail.example.com'"


@pytest.mark.parametrize("mode", MODES)
def test_ports_banks_and_access(mode: str) -> None:
    text = _conf(mode)
    # Each port on its audience's network only: Postfix's on `filter`, releases on
    # `control` (the names map to this container's addresses there).
    ports = " ".join(_assignment(text, "$inet_socket_port").split())
    assert ports == ("[ 'amavis-filter:10024', 'amavis-filter:10026', 'amavis-control:9998' ]")
    assert _assignment(text, "$inet_socket_bind") == "undef"
    assert _assignment(text, "$interface_policy{'10026'}") == "'ORIGINATING'"
    assert _assignment(text, "$interface_policy{'9998'}") == "'AM.PDP-INET'"
    bank = re.search(r"\$policy_bank\{'ORIGINATING'\} = \{(.*?)\};", text, re.S)
    assert bank is not None
    assert "originating => 1," in bank.group(1)
    pdp = re.search(r"\$policy_bank\{'AM.PDP-INET'\} = \{(.*?)\};", text, re.S)
    assert pdp is not None
    assert "protocol => 'AM.PDP'" in pdp.group(1)
    # The access lists: exactly the network each listener is on, read at start from the
    # file the container writes (no private range wholesale).
    assert _assignment(text, "@inet_acl") == "( mailyard_network('amavis-filter') )"
    assert "inet_acl => [ mailyard_network('amavis-control') ]" in pdp.group(1)
    assert "/run/mailyard/networks/$name.cidr" in text
    for wide in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"):
        assert wide not in _code(text)
    assert _assignment(text, "$auth_required_release") == "1"


@pytest.mark.parametrize("mode", MODES)
def test_everything_goes_back_through_the_reinjection_port(mode: str) -> None:
    text = _conf(mode)
    assert _assignment(text, "$forward_method") == "'smtp:[postfix-filter]:10025'"
    for name in ("$notify_method", "$release_method", "$requeue_method"):
        assert _assignment(text, name) == "$forward_method"


def test_child_count_is_the_one_postfix_is_told() -> None:
    # Postfix's transport to Amavis opens at most amavis.MAX_SERVERS connections at once.
    assert _assignment(_conf(), "$max_servers") == str(amavis.MAX_SERVERS)


def test_reinjection_target_follows_the_context() -> None:
    text = _conf(reinject_host="mta", reinject_port=10099)
    assert _assignment(text, "$forward_method") == "'smtp:[mta]:10099'"


def test_policy_and_quarantine_are_in_sql_as_the_contract_says() -> None:
    text = _conf()
    dsn = _assignment(text, "@lookup_sql_dsn")
    assert "'DBI:mysql:database=mailyard;host=db;" in dsn
    assert "'mailyard_amavis', 'am-secret-0123456789'" in dsn
    assert _assignment(text, "$sql_select_policy") == (
        "'SELECT * FROM amavis_policy WHERE email IN (%k) ORDER BY priority DESC'"
    )
    assert _assignment(text, "$sql_select_white_black_list") == "undef"
    assert _assignment(text, "@storage_sql_dsn") == "@lookup_sql_dsn"
    assert _assignment(text, "$sql_store_info_for_all_msgs") == "0"
    assert _assignment(text, "$sql_allow_8bit_address") == "1"
    for method in ("$virus_quarantine_method", "$spam_quarantine_method"):
        assert _assignment(text, method) == "'sql:'"
    assert _assignment(text, "$banned_files_quarantine_method") == "'sql:'"
    assert _assignment(text, "$QUARANTINEDIR") == "undef"


def test_destinies_let_the_per_domain_fields_decide() -> None:
    text = _conf()
    for name in ("$final_spam_destiny", "$final_virus_destiny", "$final_banned_destiny"):
        assert _assignment(text, name) == "D_BOUNCE"
    # Only the recipient domain's spam_dsn_cutoff_level decides whether a report goes out.
    assert _assignment(text, "@spam_dsn_cutoff_level_bysender_maps") == "()"
    assert _assignment(text, "$sa_tag_level_deflt") == "-999"
    assert _assignment(text, "$sa_tag2_level_deflt") == "5.0"
    assert _assignment(text, "$sa_kill_level_deflt") == "12.0"
    assert _assignment(text, "$sa_spam_subject_tag") == "undef"


def test_clamd_over_tcp_in_full_mode_and_failures_tempfail() -> None:
    text = _conf("full")
    scanners = _assignment(text, "@av_scanners")
    assert "\\&ask_daemon" in scanners
    assert "'clamd:[clamav-scan]:3310'" in scanners
    assert "'{}/*'" in scanners
    assert _assignment(text, "@av_scanners_backup") == "()"
    assert _assignment(text, "$virus_scanners_failure_is_fatal") == "1"
    assert _assignment(text, "@bypass_virus_checks_maps") == "(0)"


def test_clamd_address_follows_the_context() -> None:
    scanners = _assignment(_conf(clamd_host="av", clamd_port=3999), "@av_scanners")
    assert "'clamd:[av]:3999'" in scanners


@pytest.mark.parametrize("mode", ["no-clamav", "off"])
def test_no_virus_scanner_without_clamav(mode: str) -> None:
    text = _conf(mode)
    assert "clamd:" not in _code(text)
    assert "ask_daemon" not in _code(text)
    assert _assignment(text, "@av_scanners") == "()"
    assert _assignment(text, "@bypass_virus_checks_maps") == "(1)"
    assert _assignment(text, "$X_HEADER_TAG") == "undef"


def test_spam_checks_run_unless_the_filter_is_off() -> None:
    assert "@bypass_spam_checks_maps" not in _code(_conf("full"))
    assert "@bypass_spam_checks_maps" not in _code(_conf("no-clamav"))
    assert _assignment(_conf("off"), "@bypass_spam_checks_maps") == "(1)"


@pytest.mark.parametrize(("network_tests", "local_only"), [(True, "0"), (False, "1")])
def test_spamassassin_network_tests_follow_the_setting(
    network_tests: bool, local_only: str
) -> None:
    text = _conf(s=_mail(filter_spam_network_tests=network_tests))
    assert _assignment(text, "$sa_local_tests_only") == local_only


def test_one_banned_rule_per_contract_category() -> None:
    text = _conf()
    block = re.search(r"^%banned_rules = \((.*?)^\);", text, re.S | re.M)
    assert block is not None
    names = set(re.findall(r"^  '([a-z-]+)' => new_RE\(", block.group(1), re.M))
    assert names == BANNED_CATEGORIES
    assert _assignment(text, "@banned_filename_maps") == "('executables')"


def test_perl_quoting_of_the_password() -> None:
    text = _conf(db_password="it's\\odd")
    assert "'mailyard_amavis', 'it\\'s\\\\odd'" in _assignment(text, "@lookup_sql_dsn")


def test_the_file_with_the_password_is_readable_by_group_amavis_only(tmp_path: Path) -> None:
    (item,) = _release().files
    assert (item.mode, item.gid) == (0o640, 220)
    store = ReleaseStore(tmp_path / "amavis")
    name = store.write(_release())
    assert (store.path_of(name) / "amavisd.conf").stat().st_mode & 0o777 == 0o640


def test_managed_service_commands() -> None:
    assert amavis.AMAVIS.name == "amavis"
    assert amavis.AMAVIS.reload == ("mailyard-amavis-reload",)
    assert amavis.AMAVIS.gate == ("timeout", "10", "mailyard-amavis-healthcheck")
    assert amavis.AMAVIS.release_path("0" * 20) == "/etc/mailyard/amavis/releases/" + "0" * 20


class _Runtime:
    def __init__(self, result: ExecResult) -> None:
        self.result = result
        self.argv: list[str] = []

    def exec(self, replica: Replica, argv: list[str]) -> ExecResult:
        self.argv = argv
        return self.result


_REPLICA = Replica(
    id="x",
    name="mailyard-amavis-1",
    service="amavis",
    number=1,
    running=True,
    restarting=False,
    started_at="s",
)


def test_validate_reports_amavisd_errors() -> None:
    output = (
        'Error in config file "/etc/mailyard/amavis/releases/r/amavisd.conf": Global symbol '
        '"$sa_tag_levl" requires explicit package name at ... line 135.\n'
        "amavisd test-config failed (exit 1) for /etc/mailyard/amavis/releases/r/amavisd.conf\n"
    )
    runtime = _Runtime(ExecResult(exit_code=1, output=output))
    result = amavis.validate(runtime, _REPLICA, "/etc/mailyard/amavis/releases/r")  # type: ignore[arg-type]
    assert runtime.argv == [
        "mailyard-amavis-validate",
        "/etc/mailyard/amavis/releases/r/amavisd.conf",
    ]
    assert not result.ok
    assert len(result.errors) == 1
    assert "sa_tag_levl" in result.errors[0]


def test_validate_passes_notices_on_as_warnings() -> None:
    notice = "Variable $sa_timeout was retired, changing its value has no effect."
    runtime = _Runtime(ExecResult(exit_code=0, output=notice + "\n"))
    result = amavis.validate(runtime, _REPLICA, "/r")  # type: ignore[arg-type]
    assert result.ok
    assert result.warnings == [notice]


def test_validate_without_output_still_fails() -> None:
    runtime = _Runtime(ExecResult(exit_code=2, output=""))
    result = amavis.validate(runtime, _REPLICA, "/r")  # type: ignore[arg-type]
    assert result.errors == ["mailyard-amavis-validate exited 2"]
