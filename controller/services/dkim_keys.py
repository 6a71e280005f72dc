"""DKIM private key files in the `dkim` volume, which OpenDKIM reads (controller/domain/dkim.py
decides which keys exist; this module only keeps their files)."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from controller.services.rendering import hand_to_group

# OpenDKIM's group in its image (images/opendkim/Dockerfile): it reads the keys.
OPENDKIM_GID = 222
# The contract allows [a-z0-9-]{1,63}; a DNS label also may not start or end with '-'.
SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
KEY_SUFFIX = ".key"


class KeyStore:
    """The private key files in the `dkim` volume: `<root>/<domain>/<selector>.key`.

    Files are 0640 and directories 0750, group 222, so only OpenDKIM's group reads them
    (besides the controller that writes them). The group is set as the controller's user
    is a member of it; unit tests run without it.
    """

    def __init__(self, root: Path, gid: int = OPENDKIM_GID) -> None:
        self.root = root
        self.gid = gid

    def path(self, domain: str, selector: str) -> Path:
        # Both parts are validated names (A-labels, SELECTOR): no '/' and no '..'.
        if not SELECTOR.fullmatch(selector) or "/" in domain or domain.startswith("."):
            raise ValueError(f"refusing key path for {domain!r}/{selector!r}")
        return self.root / domain / f"{selector}{KEY_SUFFIX}"

    def _directory(self, path: Path) -> None:
        if not path.is_dir():
            path.mkdir(parents=True, exist_ok=True)
        self._own(path, 0o750)

    def _own(self, path: Path, mode: int) -> None:
        hand_to_group(path, self.gid)
        os.chmod(path, mode)

    def write(self, domain: str, selector: str, private_pem: bytes) -> Path:
        """Write the key atomically: readers see no file or the whole key, never part."""
        target = self.path(domain, selector)
        self._directory(self.root)
        self._directory(target.parent)
        descriptor, temporary = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        try:
            # mkstemp creates 0600; group read is added only once the group is right.
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(private_pem)
                handle.flush()
                os.fsync(handle.fileno())
            self._own(Path(temporary), 0o640)
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return target

    def exists(self, domain: str, selector: str) -> bool:
        return self.path(domain, selector).exists()

    def remove(self, domain: str, selector: str) -> None:
        self.path(domain, selector).unlink(missing_ok=True)

    def remove_domain(self, domain: str) -> None:
        if "/" in domain or domain in {"", ".", ".."}:
            raise ValueError(f"refusing to remove keys of {domain!r}")
        shutil.rmtree(self.root / domain, ignore_errors=True)
