"""controller/services/postgrey.py, templates/postgrey and the image's args check.

The rendered postgrey.args is checked here with the very code the container runs
(images/postgrey/entrypoint.sh --check, plain bash), so a template change that the image
would refuse fails here, without Docker. That greylisting and the reload really work is
proven against the real image by the stack tests.
"""

from __future__ import annotations

import subprocess
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from controller.domain.mail_settings import MailSettings
from controller.runtime import ExecResult, Replica
from controller.services import postgrey
from controller.services.rendering import render_release

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "images" / "postgrey" / "entrypoint.sh"


def _args(**settings: Any) -> str:
    mail = MailSettings.model_validate({"hostname": "mail.example.com", **settings})
    release = render_release(REPO / "templates", postgrey.SERVICE, postgrey.TEMPLATES, {"s": mail})
    files = {item.path: item.content.decode() for item in release.files}
    assert set(files) == {postgrey.ARGS_FILE}
    return files[postgrey.ARGS_FILE]


def _options(text: str) -> list[str]:
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def _image_check(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "postgrey.args"
    path.write_text(text)
    return subprocess.run(
        ["bash", str(ENTRYPOINT), "--check", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_default_options() -> None:
    options = _options(_args())
    assert "--delay=300" in options
    assert "--hostname=mail.example.com" in options
    assert "--auto-whitelist-clients=5" in options
    # The image owns where postgrey listens and keeps its database.
    assert not [o for o in options if o.startswith(("--inet", "--unix", "--dbdir", "--user"))]


def test_delay_follows_the_setting() -> None:
    assert "--delay=17" in _options(_args(greylisting_delay_seconds=17))


@pytest.mark.parametrize("delay", [1, 300, 86_400])
def test_image_accepts_what_the_template_renders(tmp_path: Path, delay: int) -> None:
    result = _image_check(tmp_path, _args(greylisting_delay_seconds=delay))
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("--delay=0", "from 1 to 86400"),
        ("--delay=86401", "from 1 to 86400"),
        ("--delay=300; rm -rf /", "from 1 to 86400"),
        ("--delay=0300", "from 1 to 86400"),
        ("--max-age=0", "from 1 to 3650"),
        ("--auto-whitelist-clients=-1", "from 0 to 1000"),
        ("--retry-window=2d", "days (N) or hours (Nh)"),
        ("--greylist-text=try `id`", "may hold"),
        ("--hostname=-x.example", "host name"),
        ("--inet=0.0.0.0:25", "not one a release may set"),
        ("--dbdir=/tmp", "not one a release may set"),
        ("delay=5", "not an option"),
    ],
)
def test_image_refuses_bad_lines(tmp_path: Path, line: str, reason: str) -> None:
    result = _image_check(tmp_path, f"# comment\n\n--delay=5\n{line}\n")
    assert result.returncode == 1
    assert result.stdout.startswith("ERROR line 4: ")
    assert reason in result.stdout


class _Runtime:
    """Answers the one exec the validator makes."""

    def __init__(self, result: ExecResult) -> None:
        self.result = result
        self.calls: list[list[str]] = []

    def replicas(self, service: str) -> list[Replica]:
        return []

    def refresh(self, replica: Replica) -> Replica | None:
        return replica

    def exec(
        self,
        replica: Replica,
        argv: Sequence[str],
        *,
        environment: Mapping[str, str] | None = None,
        tty: bool = False,
    ) -> ExecResult:
        self.calls.append(list(argv))
        return self.result

    def logs_since(self, replica: Replica, since: datetime) -> str:
        return ""

    def start(self, replica: Replica) -> None:
        return None

    def addresses(self, replica: Replica) -> list[str]:
        return []


REPLICA = Replica(
    id="c1",
    name="mailyard-postgrey-1",
    service="postgrey",
    number=1,
    running=True,
    restarting=False,
    started_at="t0",
)
RELEASE = "/etc/mailyard/postgrey/releases/0123456789abcdef0123"


def test_validate_runs_the_image_check_on_the_staged_file() -> None:
    runtime = _Runtime(ExecResult(0, ""))
    result = postgrey.validate(runtime, REPLICA, RELEASE)
    assert result.ok
    assert runtime.calls == [["mailyard-postgrey-validate", f"{RELEASE}/postgrey.args"]]


def test_validate_reports_each_error_line() -> None:
    output = "ERROR line 3: --delay must be ...\nERROR line 4: option --inet is not ...\n"
    result = postgrey.validate(_Runtime(ExecResult(1, output)), REPLICA, RELEASE)
    assert result.errors == ["line 3: --delay must be ...", "line 4: option --inet is not ..."]


def test_validate_never_passes_a_failed_check_silently() -> None:
    result = postgrey.validate(_Runtime(ExecResult(126, "")), REPLICA, RELEASE)
    assert result.errors == ["mailyard-postgrey-validate exited 126"]


def test_the_image_has_the_commands_the_controller_runs() -> None:
    dockerfile = (REPO / "images" / "postgrey" / "Dockerfile").read_text()
    for command in ("mailyard-postgrey-validate", *postgrey.POSTGREY.reload, "mailyard-activate"):
        assert f"/usr/local/bin/{command}" in dockerfile
    assert postgrey.POSTGREY.gate[-1] == "mailyard-postgrey-healthcheck"
    assert "/usr/local/bin/mailyard-postgrey-healthcheck" in dockerfile
    assert f"--inet=postgrey-greylist:{postgrey.POLICY_PORT}" in ENTRYPOINT.read_text()
