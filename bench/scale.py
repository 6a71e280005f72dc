"""Scale: mailboxes created per second through the API, then a Postfix map lookup
(`postmap -q` through proxymap into MariaDB) and an IMAP login, with 10,000 and with
100,000 mailboxes in the database (issue 7, benchmark 4).

One stack (project mailyard-bench-*, free loopback ports, MAILYARD_FILTER=off: the
content filter plays no part here; removed with `down -v` afterwards, errors or not):
  1. `--mailboxes` (10,000) mailboxes created with POST /api/v1/mailboxes by `--threads`
     parallel clients, in batches of `--batch`: mailboxes/s per batch. If creating them
     takes longer than `--api-budget` seconds, the rest up to `--mailboxes` is inserted
     into MariaDB directly, and the report says how many came through the API.
  2. At that size: `postmap -q <address> proxy:mysql:.../virtual_mailbox_maps.cf` for
     `--lookups` random existing addresses, timed inside the Postfix container (one
     `docker exec` running the loop; bash's $EPOCHREALTIME around each postmap process),
     the same addresses in one postmap process (`postmap -q -`, keys on stdin: the lookup
     without the process start), and `docker exec` from the host alone and with one
     postmap, for the overhead a caller outside the container adds; then `--logins` IMAP
     logins (new TLS connection to port 993 from the host, LOGIN, SELECT INBOX, LOGOUT),
     each a different random mailbox never logged in before.
  3. `--bulk-total` - `--mailboxes` (90,000) more rows inserted into MariaDB directly
     (argon2 through the API would take far longer), all with the password hash the API
     stored for the first mailbox: the same password, a valid {ARGON2ID} hash made the
     same way, so Dovecot verifies it exactly as for any other mailbox.
  4. The measurements of 2 again at that size, on other random mailboxes.

Run from the repository root with the images built (scripts/test builds them):
    .venv/bin/python bench/scale.py [--mailboxes 10000] [--bulk-total 100000]
Prints the figures and appends them to docs/benchmarks.md with the machine's description.
"""

from __future__ import annotations

import argparse
import imaplib
import math
import random
import statistics
import subprocess
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
from _stack import Stack, machine, neighbours, publish
from mailtools import insecure_tls  # tests/stack, via _stack

DOMAIN = "scale.test"
PASSWORD = "scale password 1"
MAP = "proxy:mysql:/etc/mailyard/active/sql/virtual_mailbox_maps.cf"
EXEC_SAMPLES = 20
WARMUP = 5
SQL_ROWS_PER_INSERT = 1000

# Runs in the Postfix container: one postmap process per address read from stdin, each
# timed with bash's $EPOCHREALTIME (no extra process); prints "<start> <end> <status>".
POSTMAP_LOOP = r"""
while IFS= read -r address; do
  start=$EPOCHREALTIME
  postmap -q "$address" "$1" >/dev/null
  status=$?
  echo "$start $EPOCHREALTIME $status"
done
"""
# The same addresses through one postmap process; prints "<start> <end> <keys found>".
POSTMAP_BATCH = r"""
keys=$(cat)
start=$EPOCHREALTIME
found=$(printf '%s\n' "$keys" | postmap -q - "$1" | wc -l)
echo "$start $EPOCHREALTIME $found"
"""


def address(number: int) -> str:
    return f"user{number:06d}@{DOMAIN}"


def percentile(values: list[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


@dataclass
class Creation:
    batches: list[tuple[int, float]] = field(default_factory=list)  # (mailboxes, seconds)
    through_api: int = 0
    through_sql: int = 0
    failures: list[str] = field(default_factory=list)

    @property
    def rates(self) -> list[float]:
        return [count / seconds for count, seconds in self.batches]

    @property
    def api_seconds(self) -> float:
        return sum(seconds for _, seconds in self.batches)


@dataclass
class Lookups:
    rows: int
    postmap_ms: list[float] = field(default_factory=list)  # one process each, in-container
    not_found: int = 0
    batch_per_key_ms: float = 0.0
    batch_found: int = 0
    exec_true_ms: list[float] = field(default_factory=list)  # docker exec ... true
    exec_postmap_ms: list[float] = field(default_factory=list)  # docker exec ... postmap
    # IMAP, per login: connect+TLS+greeting, LOGIN, SELECT, LOGOUT, total (ms)
    imap: dict[str, list[float]] = field(default_factory=dict)
    imap_failures: list[str] = field(default_factory=list)


class ScaleStack(Stack):
    def __init__(self) -> None:
        super().__init__()
        self.env["MAILYARD_FILTER"] = "off"
        self.env["MAILYARD_SA_UPDATE"] = "no"

    def sql(self, statements: str, timeout: float = 600) -> str:
        """Runs SQL in the db container as the controller's database user."""
        script = (
            "exec mariadb -h 127.0.0.1 --protocol=tcp -u mailyard -N -B "
            '-p"$(cat /var/lib/mailyard-secrets/db-controller-password)" mailyard'
        )
        return self.exec("db", "bash", "-c", script, stdin=statements, timeout=timeout).stdout


def create_through_api(
    stack: ScaleStack, token: str, args: argparse.Namespace, creation: Creation
) -> None:
    local = threading.local()
    clients: list[httpx.Client] = []
    lock = threading.Lock()

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = stack.api(token, timeout=120)
            with lock:
                clients.append(local.client)
        return local.client

    def create(number: int) -> str | None:
        response = client().post(
            "/mailboxes", json={"address": address(number), "password": PASSWORD}
        )
        if response.status_code != 201:
            return f"{address(number)}: {response.status_code} {response.text[:200]}"
        return None

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=args.threads) as pool:
            number = 1
            while number <= args.mailboxes:
                last = min(number + args.batch - 1, args.mailboxes)
                began = time.monotonic()
                errors = [e for e in pool.map(create, range(number, last + 1)) if e]
                seconds = time.monotonic() - began
                count = last - number + 1 - len(errors)
                creation.batches.append((count, seconds))
                creation.through_api += count
                creation.failures += errors
                print(
                    f"   mailboxes {number}-{last}: {count / seconds:.1f}/s"
                    + (f", {len(errors)} failed: {errors[0]}" if errors else ""),
                    flush=True,
                )
                if len(creation.failures) > 10:
                    raise RuntimeError(f"mailbox creation failing: {creation.failures[:3]}")
                number = last + 1
                if time.monotonic() - started > args.api_budget and number <= args.mailboxes:
                    print(f"   API budget of {args.api_budget:.0f} s spent", flush=True)
                    break
    finally:
        for each in clients:
            each.close()


def bulk_insert(stack: ScaleStack, first: int, last: int, password_hash: str) -> None:
    """Rows user<first>..user<last> straight into MariaDB, with `password_hash`."""
    if last < first:
        return
    parts = [
        "SET @hash = '" + password_hash.replace("\\", "\\\\").replace("'", "''") + "';",
        f"SET @domain = (SELECT id FROM domains WHERE name = '{DOMAIN}');",  # noqa: S608
        "START TRANSACTION;",
    ]
    for start in range(first, last + 1, SQL_ROWS_PER_INSERT):
        end = min(start + SQL_ROWS_PER_INSERT - 1, last)
        rows = ",".join(
            f"(@domain,'user{n:06d}','{address(n)}',@hash,1024,1,"
            f"'{DOMAIN}/user{n:06d}.{n:08x}',NOW(),NOW())"
            for n in range(start, end + 1)
        )
        # Every value is made here (numbers, the constant domain), none from input.
        insert = "INSERT INTO mailboxes (domain_id, local_part, address, password_hash, "
        insert += "quota_mb, active, maildir, created_at, updated_at) VALUES "
        parts.append(insert + rows + ";")
    parts.append("COMMIT;")
    stack.sql("\n".join(parts))


def api_password_hash(stack: ScaleStack) -> str:
    """The hash the API stored for the first mailbox (the bulk rows reuse it)."""
    stored = stack.sql(
        f"SELECT password_hash FROM mailboxes WHERE address = '{address(1)}';"  # noqa: S608
    ).strip()
    if not stored.startswith("{ARGON2ID}"):
        raise RuntimeError(f"unexpected stored hash {stored[:20]!r}")
    return stored


def row_count(stack: ScaleStack) -> int:
    return int(stack.sql("SELECT COUNT(*) FROM mailboxes;").split()[0])


def timed_ms(command: list[str]) -> float:
    began = time.perf_counter()
    subprocess.run(command, capture_output=True, check=True)
    return (time.perf_counter() - began) * 1000


def measure_postmap(stack: ScaleStack, sample: list[int], result: Lookups) -> None:
    postfix = stack.container("postfix")
    warm = "\n".join(address(n) for n in sample[:WARMUP]) + "\n"
    stack.exec("postfix", "bash", "-c", POSTMAP_LOOP, "loop", MAP, stdin=warm)
    keys = "\n".join(address(n) for n in sample) + "\n"
    output = stack.exec("postfix", "bash", "-c", POSTMAP_LOOP, "loop", MAP, stdin=keys)
    for line in output.stdout.splitlines():
        start, end, status = line.split()
        result.postmap_ms.append((float(end) - float(start)) * 1000)
        if status != "0":
            result.not_found += 1
    output = stack.exec("postfix", "bash", "-c", POSTMAP_BATCH, "batch", MAP, stdin=keys)
    start, end, found = output.stdout.split()
    result.batch_found = int(found)
    result.batch_per_key_ms = (float(end) - float(start)) * 1000 / len(sample)
    for number in sample[:EXEC_SAMPLES]:
        result.exec_true_ms.append(timed_ms(["docker", "exec", postfix, "true"]))
        result.exec_postmap_ms.append(
            timed_ms(["docker", "exec", postfix, "postmap", "-q", address(number), MAP])
        )


def imap_login(port: int, user: str) -> dict[str, float]:
    times: dict[str, float] = {}
    began = time.perf_counter()
    client = imaplib.IMAP4_SSL("127.0.0.1", port, ssl_context=insecure_tls(), timeout=60)
    try:
        connected = time.perf_counter()
        client.login(user, PASSWORD)
        logged_in = time.perf_counter()
        status, _ = client.select("INBOX")
        if status != "OK":
            raise imaplib.IMAP4.error(f"SELECT INBOX: {status}")
        selected = time.perf_counter()
    finally:
        client.logout()
    ended = time.perf_counter()
    times["connect + TLS + greeting"] = (connected - began) * 1000
    times["LOGIN"] = (logged_in - connected) * 1000
    times["SELECT INBOX"] = (selected - logged_in) * 1000
    times["LOGOUT"] = (ended - selected) * 1000
    times["total"] = (ended - began) * 1000
    return times


def measure_imap(stack: ScaleStack, sample: list[int], warmup: list[int], result: Lookups) -> None:
    port = stack.port("imaps")
    for number in warmup:
        imap_login(port, address(number))
    for number in sample:
        try:
            times = imap_login(port, address(number))
        except (OSError, imaplib.IMAP4.error) as error:
            result.imap_failures.append(f"{address(number)}: {error}")
            continue
        for part, value in times.items():
            result.imap.setdefault(part, []).append(value)


def measure(stack: ScaleStack, mailboxes: int, used: set[int], args: argparse.Namespace) -> Lookups:
    """Lookups and logins on random mailboxes among user000001..`mailboxes`, none of
    them in `used` (added there: no mailbox is measured twice)."""
    result = Lookups(row_count(stack))
    pool = [number for number in range(1, mailboxes + 1) if number not in used]
    picked = random.sample(pool, args.lookups + args.logins + WARMUP)
    used.update(picked)
    lookups = picked[: args.lookups]
    logins = picked[args.lookups : args.lookups + args.logins]
    warmup = picked[args.lookups + args.logins :]
    print(f"   {result.rows} mailboxes: postmap", flush=True)
    measure_postmap(stack, lookups, result)
    print(f"   postmap median {statistics.median(result.postmap_ms):.1f} ms; IMAP", flush=True)
    measure_imap(stack, logins, warmup, result)
    total = result.imap.get("total", [])
    if total:
        print(f"   IMAP login median {statistics.median(total):.1f} ms", flush=True)
    return result


def ms(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"{statistics.median(values):.1f} / {percentile(values, 0.95):.1f}"


def report(creation: Creation, results: list[Lookups], args: argparse.Namespace, error: str) -> str:
    command = (
        f".venv/bin/python bench/scale.py --mailboxes {args.mailboxes} --bulk-total "
        f"{args.bulk_total} --threads {args.threads} --batch {args.batch} --api-budget "
        f"{args.api_budget:.0f} --lookups {args.lookups} --logins {args.logins}"
    )
    rates = creation.rates
    lines = [
        f"## Scale: creating mailboxes, map lookups and IMAP logins at 10k and 100k "
        f"({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)",
        "",
        f"Machine: {machine()}. Command: `{command}` (images already built). One stack, "
        "MAILYARD_FILTER=off. The machine is shared: other test stacks may have been "
        f"running during the run (at the start: {args.neighbours}; at the end: "
        f"{neighbours()}).",
        "",
        "**Creating mailboxes through the API** (POST /api/v1/mailboxes, "
        f"{args.threads} parallel clients, batches of {args.batch}; each call hashes the "
        "password with Argon2id and flushes Dovecot's auth cache for the address):",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| mailboxes created through the API | {creation.through_api} in "
        f"{creation.api_seconds:.0f} s |",
    ]
    if rates:
        lines += [
            f"| mailboxes/s, median of {len(rates)} batches | **{statistics.median(rates):.1f}** |",
            f"| slowest / fastest batch | {min(rates):.1f} / {max(rates):.1f} |",
            f"| overall | {creation.through_api / creation.api_seconds:.1f} |",
        ]
    if creation.through_sql:
        lines.append(
            f"| inserted into MariaDB directly to reach {args.mailboxes} (API budget of "
            f"{args.api_budget:.0f} s spent) | {creation.through_sql} |"
        )
    lines += [
        "",
        "Per batch, in order (mailboxes/s): " + ", ".join(f"{rate:.1f}" for rate in rates) + ".",
        "",
        "**Lookups and logins** (median / p95, ms; p95 nearest-rank):",
        "",
        "| figure | " + " | ".join(f"{r.rows:,} mailboxes" for r in results) + " |",
        "| --- |" + " --- |" * len(results),
    ]

    def row(label: str, cells: list[str]) -> None:
        lines.append(f"| {label} | " + " | ".join(cells) + " |")

    row(
        f"`postmap -q` through proxymap, one process per lookup, timed inside the Postfix "
        f"container ({args.lookups} random addresses)",
        [f"**{ms(r.postmap_ms)}**" for r in results],
    )
    row(
        "the same addresses in one `postmap -q -` process, per key (mean)",
        [f"{r.batch_per_key_ms:.2f}" for r in results],
    )
    row(
        f"`docker exec <postfix> postmap -q ...` from the host ({EXEC_SAMPLES} runs)",
        [ms(r.exec_postmap_ms) for r in results],
    )
    row(
        f"`docker exec <postfix> true` from the host ({EXEC_SAMPLES} runs): the exec overhead",
        [ms(r.exec_true_ms) for r in results],
    )
    row(
        f"IMAP over 993: connect, LOGIN, SELECT INBOX, LOGOUT, new connection each "
        f"({args.logins} random mailboxes)",
        [f"**{ms(r.imap.get('total', []))}**" for r in results],
    )
    for part in ("connect + TLS + greeting", "LOGIN", "SELECT INBOX", "LOGOUT"):
        row(f"... {part}", [ms(r.imap.get(part, [])) for r in results])
    lines += [
        "",
        "What the figures measure:",
        "",
        f"- The first {creation.through_api} mailboxes came through the API; the rest up to "
        f"{args.bulk_total:,} were inserted into MariaDB directly (multi-row INSERTs in one "
        "transaction), since Argon2id through the API would take far longer. Those rows "
        "all carry the hash the API stored for the first mailbox (same password, a valid "
        "{ARGON2ID} hash with the API's parameters), so Dovecot verifies each login with "
        "the same work as for any mailbox; maildir paths are unique as the API makes them.",
        f"- `postmap -q` runs in the Postfix container against `{MAP}`: "
        "postmap asks the proxymap service, which keeps its MariaDB connection open and "
        "runs the map's query (`mailboxes` joined with `domains`, by the unique address). "
        "The in-container figure is one postmap process each (bash's $EPOCHREALTIME around "
        f"it), after {WARMUP} warm-up lookups; most of it is starting postmap. The batch "
        "figure is the lookup alone (one process, keys on stdin). `docker exec` adds the "
        "overhead in its own rows, which is what a caller outside the container pays.",
        "- Each IMAP login is a mailbox nobody had logged in to before (so Dovecot's auth "
        "cache cannot answer, and its maildir does not exist yet: Dovecot creates it on "
        "first access), chosen at random among all mailboxes, a different one "
        f"for each login and for each size; {WARMUP} warm-up logins first. LOGIN costs "
        "one SQL query (passdb with prefetch userdb) and an Argon2id verification.",
    ]
    odd = []
    if error:
        odd.append(f"failed: {error}")
    if creation.failures:
        odd.append(f"{len(creation.failures)} API calls failed, e.g. {creation.failures[0]}")
    for r in results:
        if r.not_found or r.batch_found != args.lookups:
            odd.append(
                f"{r.rows} mailboxes: {r.not_found} single lookups not found; batch found "
                f"{r.batch_found} of {args.lookups}"
            )
        if r.imap_failures:
            odd.append(
                f"{r.rows} mailboxes: {len(r.imap_failures)} IMAP logins failed, "
                f"e.g. {r.imap_failures[0]}"
            )
    lines += ["", "Errors:", "", *(f"- {line}" for line in odd or ["none"]), ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=10_000, help="created through the API")
    parser.add_argument("--bulk-total", type=int, default=100_000, help="mailboxes after bulk")
    parser.add_argument("--threads", type=int, default=4, help="parallel API clients")
    parser.add_argument("--batch", type=int, default=500, help="mailboxes per timed batch")
    parser.add_argument(
        "--api-budget",
        type=float,
        default=540,
        help="seconds of API creation before the rest is inserted directly",
    )
    parser.add_argument("--lookups", type=int, default=200, help="postmap lookups per size")
    parser.add_argument("--logins", type=int, default=200, help="IMAP logins per size")
    parser.add_argument("--seed", type=int, default=7, help="random seed for the samples")
    parser.add_argument("--no-publish", action="store_true", help="print only")
    args = parser.parse_args()
    args.neighbours = neighbours()
    random.seed(args.seed)

    creation = Creation()
    results: list[Lookups] = []
    error = ""
    try:
        with ScaleStack() as stack:
            started = time.monotonic()
            stack.up()
            stack.wait_healthy(timeout=600)
            print(
                f"== {stack.project} healthy after {time.monotonic() - started:.0f} s",
                flush=True,
            )
            token = stack.admin_token()
            with stack.api(token, timeout=60) as api:
                api.post("/domains", json={"name": DOMAIN}).raise_for_status()
            create_through_api(stack, token, args, creation)
            password_hash = api_password_hash(stack)
            created = creation.through_api
            bulk_insert(stack, created + 1, args.mailboxes, password_hash)
            creation.through_sql = args.mailboxes - created
            used: set[int] = set()
            results.append(measure(stack, args.mailboxes, used, args))

            began = time.monotonic()
            bulk_insert(stack, args.mailboxes + 1, args.bulk_total, password_hash)
            print(
                f"   inserted {args.bulk_total - args.mailboxes} rows in "
                f"{time.monotonic() - began:.0f} s",
                flush=True,
            )
            results.append(measure(stack, args.bulk_total, used, args))
    except Exception as exc:  # noqa: BLE001 - reported with what was measured
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
    text = report(creation, results, args, error)
    if args.no_publish or error or len(results) < 2:
        print(text)
        if error or len(results) < 2:
            print("incomplete: not appended to docs/benchmarks.md")
            return 1
        return 0
    publish(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
