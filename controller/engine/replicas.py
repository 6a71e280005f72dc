"""A managed service's running containers, and the release each one runs (the target of
its /etc/mailyard/active link)."""

from __future__ import annotations

from controller.errors import Unavailable
from controller.runtime import Replica, Runtime
from controller.services.managed import ACTIVE_LINK, ManagedService


class Replicas:
    def __init__(self, runtime: Runtime | None) -> None:
        self.runtime = runtime  # None: the controller cannot reach the Docker engine

    # --- containers --------------------------------------------------------------------

    def require_runtime(self) -> Runtime:
        if self.runtime is None:
            raise Unavailable(
                "the controller cannot reach the Docker engine, so it cannot validate or "
                "reload services; mount /var/run/docker.sock into the controller"
            )
        return self.runtime

    def running(self, service: ManagedService) -> list[Replica]:
        if self.runtime is None:
            return []
        return [replica for replica in self.runtime.replicas(service.name) if replica.running]

    def active(self, replica: Replica) -> str | None:
        result = self.require_runtime().exec(replica, ["readlink", ACTIVE_LINK])
        return result.output.strip().rsplit("/", 1)[-1] if result.ok else None

    def running_with_release(self, service: ManagedService) -> list[tuple[Replica, str | None]]:
        return [(replica, self.active(replica)) for replica in self.running(service)]

    def replica_releases(self, service: ManagedService) -> dict[str, str | None]:
        return {replica.name: active for replica, active in self.running_with_release(service)}

    def validation_replica(self, service: ManagedService, *, strict: bool) -> Replica | None:
        if self.runtime is None:
            if strict:
                self.require_runtime()
            return None
        running = self.running(service)
        if running:
            return running[0]
        if strict and self.runtime.replicas(service.name):
            raise Unavailable(
                f"{service.name} is not running, so the change cannot be checked by "
                f"{service.name} itself; start it (docker compose start {service.name}) "
                "and try again. Nothing was changed."
            )
        return None
