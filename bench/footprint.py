"""Footprint and start: time from `docker compose up -d` to all healthy and to the first
delivered message, and each container's memory at idle (median of samples).

Run from the repository root with the images built (scripts/test builds them):
    .venv/bin/python bench/footprint.py [--samples 7]
Prints the figures and appends them to docs/benchmarks.md with the machine's description.
Uses a project of its own (mailyard-bench-*) on free loopback ports.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import smtplib
import statistics
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "stack"))
from mailtools import (  # noqa: E402
    PUBLISHED_PORTS,
    free_port,
    imap_message_ids,
    make_message,
    wait_for,
)


def compose_command() -> list[str]:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    return ["docker", "compose"] if probe.returncode == 0 else ["docker-compose"]


def machine() -> str:
    memory_kib = next(
        int(line.split()[1])
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    docker = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    compose = subprocess.run(
        [*compose_command(), "version", "--short"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"{os.cpu_count()} CPUs, {memory_kib / 1024 / 1024:.1f} GiB RAM, "
        f"{platform.system()} {platform.release()}, Docker {docker}, Compose {compose}"
    )


def memory_mib(text: str) -> float:
    value = text.split("/", maxsplit=1)[0].strip()
    units = {"KiB": 1 / 1024, "MiB": 1.0, "GiB": 1024.0, "B": 1 / 1024 / 1024}
    for unit, factor in units.items():
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    raise ValueError(f"unexpected memory figure {text!r}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=7, help="idle memory samples")
    parser.add_argument("--settle", type=float, default=30, help="seconds idle before sampling")
    args = parser.parse_args()

    project = f"mailyard-bench-{uuid.uuid4().hex[:6]}"
    ports = {variable: free_port() for variable in PUBLISHED_PORTS.values()}
    env = {**os.environ, "COMPOSE_PROJECT_NAME": project, "MAILYARD_BIND_ADDRESS": "127.0.0.1"}
    env.update({key: str(value) for key, value in ports.items()})
    compose = compose_command()

    def run(*arguments: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*compose, *arguments],
            cwd=REPO,
            env=env,
            text=True,
            capture_output=True,
            check=True,
            timeout=600,
        )

    try:
        started = time.monotonic()
        run("up", "-d", "--no-build")

        def healthy() -> bool:
            ids = run("ps", "-q").stdout.split()
            states = json.loads(
                subprocess.run(
                    ["docker", "inspect", *ids], capture_output=True, text=True, check=True
                ).stdout
            )
            return len(states) == 4 and all(
                (s["State"].get("Health") or {}).get("Status") == "healthy" for s in states
            )

        wait_for("all services healthy", healthy, timeout=300, interval=0.5)
        to_healthy = time.monotonic() - started

        token = run("exec", "-T", "controller", "mailyard", "admin-token").stdout.strip()
        api = f"http://127.0.0.1:{ports['MAILYARD_API_PORT']}/api/v1"
        headers = {"Authorization": f"Bearer {token}"}
        httpx.post(
            f"{api}/domains", headers=headers, json={"name": "bench.test"}
        ).raise_for_status()
        httpx.post(
            f"{api}/mailboxes",
            headers=headers,
            json={"address": "bench@bench.test", "password": "bench password 1"},
        ).raise_for_status()
        message = make_message("sender@remote.test", ["bench@bench.test"], "first")
        with smtplib.SMTP("127.0.0.1", ports["MAILYARD_SMTP_PORT"], timeout=60) as client:
            client.send_message(message)
        first_accepted = time.monotonic() - started
        wait_for(
            "the first message delivered",
            lambda: (
                message["Message-ID"]
                in imap_message_ids(
                    "127.0.0.1",
                    ports["MAILYARD_IMAPS_PORT"],
                    "bench@bench.test",
                    "bench password 1",
                )
            ),
            interval=0.2,
        )
        first_delivered = time.monotonic() - started

        time.sleep(args.settle)
        samples: dict[str, list[float]] = {}
        for _ in range(args.samples):
            stats = subprocess.run(
                ["docker", "stats", "--no-stream", "--format", "{{.Name}}\t{{.MemUsage}}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            for line in stats.splitlines():
                name, usage = line.split("\t")
                if name.startswith(project):
                    service = name.removeprefix(project).strip("-_").rsplit("-", 1)[0]
                    service = service.rsplit("_", 1)[0]
                    samples.setdefault(service, []).append(memory_mib(usage))
            time.sleep(5)
    finally:
        subprocess.run(
            [*compose, "down", "-v", "--timeout", "5"],
            cwd=REPO,
            env=env,
            capture_output=True,
            check=False,
        )

    medians = {service: statistics.median(values) for service, values in sorted(samples.items())}
    lines = [
        f"## Footprint and start ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {machine()}. Command: `.venv/bin/python bench/footprint.py "
        f"--samples {args.samples}` (images already built).",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| `up -d` to all four services healthy | {to_healthy:.1f} s |",
        f"| `up -d` to first message accepted on port 25 (incl. creating domain and mailbox) "
        f"| {first_accepted:.1f} s |",
        f"| `up -d` to that message readable over IMAPS | {first_delivered:.1f} s |",
        "",
        f"Idle memory per container (median of {args.samples} `docker stats` samples, "
        f"after {args.settle:.0f} s idle):",
        "",
        "| container | MiB |",
        "| --- | --- |",
        *(f"| {service} | {value:.1f} |" for service, value in medians.items()),
        f"| **total** | **{sum(medians.values()):.1f}** |",
        "",
    ]
    report = "\n".join(lines)
    print(report)
    target = REPO / "docs" / "benchmarks.md"
    if not target.exists():
        target.write_text(
            "# Benchmarks\n\nFigures written by the scripts in `bench/`; each section says how "
            "to rerun it. Machines are shared and noisy: compare figures from the same run.\n\n"
        )
    with target.open("a") as handle:
        handle.write(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
