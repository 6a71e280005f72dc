"""Footprint and start: time from `docker compose up -d` to all healthy and to the first
delivered message, and each container's memory at idle (median of samples).

Run from the repository root with the images built (scripts/test builds them):
    .venv/bin/python bench/footprint.py [--samples 7]
Prints the figures and appends them to docs/benchmarks.md with the machine's description.
Uses a project of its own (mailyard-bench-*) on free loopback ports.
"""

from __future__ import annotations

import argparse
import smtplib
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime

from _stack import Stack, machine, publish
from mailtools import imap_message_ids, make_message, wait_for  # tests/stack, via _stack


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

    with Stack() as stack:
        project, ports = stack.project, stack.ports
        started = time.monotonic()
        stack.up()
        stack.wait_healthy()
        to_healthy = time.monotonic() - started

        with stack.api(stack.admin_token()) as api:
            api.post("/domains", json={"name": "bench.test"}).raise_for_status()
            api.post(
                "/mailboxes",
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

    medians = {service: statistics.median(values) for service, values in sorted(samples.items())}
    lines = [
        f"## Footprint and start ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {machine()}. Command: `.venv/bin/python bench/footprint.py "
        f"--samples {args.samples}` (images already built).",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| `up -d` to all services healthy | {to_healthy:.1f} s |",
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
    publish("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
