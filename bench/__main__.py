"""``python -m bench`` (``make bench``): seed, serve, discover, time, race, report.

    python -m bench                         # 1k, 20k, 200k on PostgreSQL; the largest on SQLite too
    python -m bench --sizes 1k              # the smallest only (PostgreSQL and SQLite)
    python -m bench --databases postgresql --sizes 200k --no-race
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from bench import datasets, load, report
from bench.report import DatasetResult, FloorResult, PageResult


def _options(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1k,20k,200k", help="entitlements per data set (default: %(default)s)")
    parser.add_argument("--sqlite-sizes", default=None,
                        help="sizes also run on SQLite (default: the largest of --sizes; 'none' for none)")
    parser.add_argument("--databases", default="postgresql,sqlite", help="default: %(default)s")
    parser.add_argument("--requests", type=int, default=300, help="sequential requests per page (after 20 warm-up)")
    parser.add_argument("--max-seconds", type=float, default=10.0, help="cap on the sequential run of one page")
    parser.add_argument("--wrk-seconds", type=float, default=2.0, help="duration of each wrk run at 8 clients")
    parser.add_argument("--wrk-runs", type=int, default=3,
                        help="wrk runs per page, alternating with as many on the floor; the best of each counts")
    parser.add_argument("--no-race", action="store_true", help="skip the activation race")
    parser.add_argument("--no-fanout", action="store_true",
                        help="skip the notification fan-out (a security patch to every customer of the largest size)")
    parser.add_argument("--pages", default="",
                        help="only pages whose route contains one of these texts (comma-separated; "
                             "a text ending in $ must end the route: /producer/$ is the overview alone)")
    parser.add_argument("--out", default=str(datasets.ROOT / "bench" / "results"), help="where the report goes")
    parser.add_argument("--name", default=None, help="report file name (default: today's date)")
    return parser.parse_args(argv)


def _say(message: str) -> None:
    print(message, flush=True)


def _load() -> str:
    """The load averages (1, 5, 15 minutes): the machine may be busy with other work."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def measure(kind: str, size: datasets.Size, options) -> DatasetResult:
    from bench.actors import BENCH_PASSWORD, prepare_actors
    from bench.pages import discover, has_fragment
    from portal import policy
    from portal.extensions import db
    from portal.models import Organization, User

    _say(f"\n== {size.label} entitlements on {kind}")
    url = datasets.ensure(kind, size, log=_say)
    app = datasets.make_app(url)
    plans = []
    who = []
    with app.app_context():
        for bench_actor in prepare_actors():
            user = db.session.scalar(db.select(User).where(User.email == bench_actor.email))
            actor = policy.actor_for(user, db.session.get(Organization, bench_actor.org_id))
            pages, skipped = discover(app, bench_actor.area, actor)
            pages = [p for p in pages if _chosen(p.key, options.pages)]
            plans.append((bench_actor, pages, skipped))
            who.append([bench_actor.label, bench_actor.org_name, _facts(actor)])
        db.session.remove()
        db.engine.dispose()
    # The actors' users, memberships and audit events (and earlier runs' sign-ins) came after the
    # seed's statistics: with autovacuum off the planner took the audit trail for 6 rows and
    # merge-joined every user there is to show 25 of them (/producer/audit 18 ms instead of 4).
    datasets.settle(url)

    env = {"PORTAL_DATABASE_URL": url, "PORTAL_SECRET_KEY": datasets.BENCH_SECRET_KEY,
           "PORTAL_INSTANCE_PATH": str(datasets.DATA / "instance"), "PORTAL_LOCAL_LOGIN_ENABLED": "true"}
    portal = load.gunicorn("portal", "wsgi:app", env)
    floor_server = load.gunicorn("floor", "bench.floor:app", {"BENCH_FLOOR_DATABASE_URL": url})
    result = DatasetResult(kind=kind, size=size.label, entitlements=size.entitlements, load_before=_load(),
                           actors=who)
    try:
        floors = [_floor(floor_server.port, options)]
        for bench_actor, pages, skipped in plans:
            cookie = load.sign_in(portal.port, bench_actor.email, BENCH_PASSWORD)
            result.skipped += [(bench_actor.label, s.key, s.reason, s.unfillable) for s in skipped]
            for page in pages:
                headers = {"Cookie": cookie}
                full = load.request(portal.port, page.url, headers=headers)
                variants = [(False, headers)]
                htmx_headers = {**headers, "HX-Request": "true"}
                if full.status == 200 and has_fragment(full.body, load.request(portal.port, page.url,
                                                                               headers=htmx_headers).body):
                    variants.append((True, htmx_headers))
                for htmx, variant_headers in variants:
                    result.pages.append(_page(portal.port, floor_server.port, bench_actor, page, htmx,
                                              variant_headers, options))
        floors.append(_floor(floor_server.port, options))
    finally:
        portal.stop()
        floor_server.stop()
    result.floor = FloorResult(
        p50=sum(f.p50 for f in floors) / len(floors), p95=sum(f.p95 for f in floors) / len(floors),
        rps=sum(f.rps for f in floors) / len(floors), runs=[asdict(f) for f in floors])
    result.load_after = _load()
    return result


def _facts(actor) -> str:
    """What the actor sees, in numbers (through the policy's scopes)."""
    from sqlalchemy import func, select

    from portal import policy
    from portal.extensions import db

    def count(query) -> int:
        return db.session.scalar(select(func.count()).select_from(query.order_by(None).subquery()))

    facts = [f"{count(policy.visible_entitlements(actor)):,} entitlements"]
    if actor.is_partner:
        facts.append(f"{count(policy.customers_served_by(actor)):,} customers served")
    if actor.is_customer:
        facts.append(f"{count(policy.subtree_org_ids(actor.org)):,} organizations in its tree")
    return ", ".join(facts)


def _floor(port: int, options) -> FloorResult:
    timing = load.sequential(port, "/", {}, requests=options.requests, max_seconds=options.max_seconds)
    rate = load.wrk(port, "/", {}, seconds=options.wrk_seconds, runs=options.wrk_runs)
    _say(f"  floor: p50 {timing.p50:.1f} ms, p95 {timing.p95:.1f} ms, {rate.requests_per_second:.0f} req/s at 8")
    return FloorResult(p50=timing.p50, p95=timing.p95, rps=rate.requests_per_second)


def _page(port, floor_port, bench_actor, page, htmx, headers, options) -> PageResult:
    timing = load.sequential(port, page.url, headers, requests=options.requests, max_seconds=options.max_seconds)
    ok = set(timing.statuses) <= {200}
    rate = floor = load.Throughput(0.0, 0)
    if ok:
        # The floor's runs alternate with the page's, so both see the same weather.
        rate, floor = load.wrk_beside(port, page.url, headers, floor_port, "/", seconds=options.wrk_seconds,
                                      runs=options.wrk_runs)
    label = page.key + (" [HX]" if htmx else "")
    ratio = rate.requests_per_second / floor.requests_per_second if floor.requests_per_second else 0.0
    result = PageResult(actor=bench_actor.label, page=label, url=page.url, statuses=timing.statuses,
                        p50=timing.p50, p95=timing.p95, rps=rate.requests_per_second, errors=rate.errors,
                        queries=sorted(timing.queries), samples=len(timing.seconds), ratio=ratio,
                        floor_rps=floor.requests_per_second, first_byte_p95=timing.first_byte_p95 or 0.0,
                        rows=timing.rows, rows_per_second=timing.rows_per_second)
    _say(f"  {bench_actor.label:<15} {label:<40} p50 {timing.p50:7.1f} ms  p95 {timing.p95:7.1f} ms  "
         f"{rate.requests_per_second:6.0f} req/s ({ratio:4.0%} of {floor.requests_per_second:.0f})  "
         f"{'/'.join(map(str, result.queries)) or '?'} queries  {dict(timing.statuses)}")
    return result


def _chosen(key: str, texts: str) -> bool:
    """Whether ``--pages`` asks for the page ``key`` (every page when it is empty)."""
    for text in filter(None, (part.strip() for part in texts.split(","))):
        if key.endswith(text[:-1]) if text.endswith("$") else text in key:
            return True
    return not texts.strip(",").strip()


def main(argv: list[str] | None = None) -> int:
    options = _options(argv)
    if not load.wrk_available():
        _say("wrk is not installed: `apt-get install wrk` (or `make wrk`)")
        return 2
    sizes = sorted((datasets.parse_size(s) for s in options.sizes.split(",") if s.strip()),
                   key=lambda s: s.entitlements)
    databases = [d.strip() for d in options.databases.split(",") if d.strip()]
    if options.sqlite_sizes is None:
        sqlite_sizes = sizes[-1:]
    elif options.sqlite_sizes.strip().lower() == "none":
        sqlite_sizes = []
    else:
        sqlite_sizes = [datasets.parse_size(s) for s in options.sqlite_sizes.split(",") if s.strip()]
    started = time.monotonic()
    runs: list[DatasetResult] = []
    if "postgresql" in databases:
        runs += [measure("postgresql", size, options) for size in sizes]
    if "sqlite" in databases:
        runs += [measure("sqlite", size, options) for size in sqlite_sizes]
    races = []
    if not options.no_race:
        from bench import race

        for kind in databases:
            _say(f"\n== activation race on {kind}")
            outcome = race.run(kind)
            _say(f"  {outcome.attempts} attempts over {race.CONNECTIONS} connections in {outcome.seconds:.2f} s: "
                 f"{outcome.per_second:.0f}/s, {outcome.activated} activated of {outcome.seats} seats, "
                 f"{outcome.refused} refused, {outcome.errors} errors, {outcome.oversubscribed_lines} oversubscribed")
            races.append(outcome)
    fanouts = []
    if not options.no_fanout and "postgresql" in databases and sizes:
        from bench import fanout

        _say(f"\n== notification fan-out on postgresql, {sizes[-1].label} entitlements")
        fanouts.append(fanout.run("postgresql", sizes[-1], log=_say))
    context = {
        "date": datetime.now().strftime("%Y-%m-%d %H:%M"),
        "commit": _git("rev-parse", "--short", "HEAD"),
        "dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "cpus": os.cpu_count(),
        "minutes": (time.monotonic() - started) / 60,
        "command": "python -m bench " + " ".join(sys.argv[1:] if argv is None else argv),
        "wrk": f"the best of {options.wrk_runs} runs of {options.wrk_seconds:g} s, each after one on the floor",
    }
    out = Path(options.out)
    out.mkdir(parents=True, exist_ok=True)
    name = options.name or datetime.now().strftime("%Y-%m-%d")
    markdown, misses = report.write(out, name, runs, races, context)
    if fanouts:
        with Path(markdown).open("a") as file:
            file.write(_fanout_table(fanouts))
        misses = [*misses, *(miss for f in fanouts for miss in f.misses)]
    (out / f"{name}.json").write_text(json.dumps(
        {"context": context, "runs": [asdict(r) for r in runs], "races": [asdict(r) for r in races],
         "fanouts": [asdict(f) for f in fanouts]}, indent=1))
    _say(f"\nReport: {markdown}")
    if misses:
        _say(f"\n{len(misses)} budget misses:")
        for miss in misses:
            _say(f"  {miss}")
    else:
        _say("\nEvery page meets its budgets.")
    return 0


def _fanout_table(fanouts) -> str:
    lines = ["", "## Notification fan-out", "",
             "A security patch to every customer owning the most common product, run as the worker runs it; "
             "then delivered by two `flask portal worker --once` processes to a local SMTP server.", "",
             "| database | data set | organizations | messages | mails | queued in | delivered | twice "
             "| delivered in |",
             "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for f in fanouts:
        lines.append(f"| {f.kind} | {f.size} | {f.organizations:,} | {f.messages:,} | {f.emails:,} | "
                     f"{f.queue_seconds:.1f} s | {f.delivered:,} | {f.duplicates} | {f.delivery_seconds:.1f} s |")
    return "\n".join(lines) + "\n\nBudgets: queued in under 30 s, delivered in under 60 s, every mail once.\n"


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=datasets.ROOT,  # noqa: S603,S607
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


if __name__ == "__main__":
    sys.exit(main())
