"""Postgrey: the greylisting policy service, and the options Mailyard renders for it.

Contract with images/postgrey: postgrey listens on TCP 10023 of the `postgrey` service,
runs as uid/gid 223 with its database in the volume at /var/lib/postgrey, releases
appear under /etc/mailyard/postgrey/releases, the running one at /etc/mailyard/active,
and the image has mailyard-postgrey-validate, mailyard-postgrey-reload,
mailyard-postgrey-healthcheck and mailyard-activate.

Postgrey reads its options only when it starts, so a reload restarts the postgrey
process inside the container (the container itself stays up; see
images/postgrey/entrypoint.sh). Postfix asks it only when greylisting_enabled is on.
"""

from __future__ import annotations

from controller.runtime import Replica, Runtime
from controller.services.managed import ManagedService, Validation
from controller.services.rendering import TemplateFile

SERVICE = "postgrey"
POSTGREY_UID = 223
POSTGREY_GID = 223
POLICY_PORT = 10023
# Where Postfix asks it: its address on the `greylist` network (compose.yaml alias).
POLICY_HOST = "postgrey-greylist"
ARGS_FILE = "postgrey.args"

TEMPLATES: tuple[TemplateFile, ...] = (
    # No secrets: options only.
    TemplateFile("postgrey.args.j2", ARGS_FILE),
)


def validate(runtime: Runtime, replica: Replica, release_path: str) -> Validation:
    """The image's own check of the staged postgrey.args (images/postgrey/validate.sh):
    only the options a release may set, each in range, nothing else on a line. The
    entrypoint applies the same check before it starts postgrey."""
    result = runtime.exec(replica, ["mailyard-postgrey-validate", f"{release_path}/{ARGS_FILE}"])
    errors = [
        line.removeprefix("ERROR ").strip() for line in result.output.splitlines() if line.strip()
    ]
    if result.ok:
        return Validation()
    return Validation(errors=errors or [f"mailyard-postgrey-validate exited {result.exit_code}"])


POSTGREY = ManagedService(
    name=SERVICE,
    templates=TEMPLATES,
    validate=validate,
    # Restarts postgrey inside the container and waits until it answers again.
    reload=("mailyard-postgrey-reload",),
    # `timeout`: a check that hangs must not stall the gate past its deadline.
    gate=("timeout", "10", "mailyard-postgrey-healthcheck"),
)
