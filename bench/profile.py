"""Profile one page in-process with pyinstrument (``pip install -e ".[bench]"``).

    python -m bench.profile --size 200k --actor reseller /partner/
    python -m bench.profile --size 200k --database sqlite --actor "producer staff" /producer/ --htmx

Uses the data set ``make bench`` seeded (seeding it first if needed) and the bench's actors,
signs in through ``POST /login`` with Flask's test client, warms up, then profiles
``--requests`` requests and prints the call tree; ``--sql`` also prints each SQL statement of
one request with its time.
"""

from __future__ import annotations

import argparse
import time

from sqlalchemy import event

from bench import datasets


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("path")
    parser.add_argument("--size", default="200k")
    parser.add_argument("--database", default="postgresql", choices=("postgresql", "sqlite"))
    parser.add_argument("--actor", default="reseller", help="a bench actor's label (default: %(default)s)")
    parser.add_argument("--htmx", action="store_true", help="send HX-Request: true")
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--sql", action="store_true", help="print the SQL statements of one request")
    options = parser.parse_args(argv)

    from pyinstrument import Profiler

    from bench.actors import BENCH_PASSWORD, prepare_actors
    from portal.extensions import db

    url = datasets.ensure(options.database, datasets.parse_size(options.size))
    app = datasets.make_app(url, WTF_CSRF_ENABLED=False, RATELIMIT_ENABLED=False)
    with app.app_context():
        actors = {a.label: a for a in prepare_actors()}
        db.session.remove()
    chosen = actors[options.actor]
    client = app.test_client()
    assert client.post("/login", data={"email": chosen.email, "password": BENCH_PASSWORD}).status_code == 302
    headers = {"HX-Request": "true"} if options.htmx else {}
    for _ in range(5):
        client.get(options.path, headers=headers, buffered=True)
    if options.sql:
        with app.app_context():
            engine = db.engine
        started: dict[int, float] = {}

        def _before(conn, cursor, statement, parameters, context, executemany):
            started[id(cursor)] = time.perf_counter()

        def _after(conn, cursor, statement, parameters, context, executemany):
            elapsed = (time.perf_counter() - started.pop(id(cursor), time.perf_counter())) * 1000
            print(f"-- {elapsed:7.2f} ms\n{statement}\n   {parameters}\n")

        event.listen(engine, "before_cursor_execute", _before)
        event.listen(engine, "after_cursor_execute", _after)
        client.get(options.path, headers=headers, buffered=True)
        event.remove(engine, "before_cursor_execute", _before)
        event.remove(engine, "after_cursor_execute", _after)
    profiler = Profiler(interval=0.0005)
    profiler.start()
    began = time.perf_counter()
    for _ in range(options.requests):
        # Buffered: a streamed response (a CSV export) is read to its end, as a client would.
        status = client.get(options.path, headers=headers, buffered=True).status_code
    elapsed = (time.perf_counter() - began) / options.requests * 1000
    profiler.stop()
    print(f"{options.path} as {chosen.label} ({chosen.org_name}) on {options.size}/{options.database}: "
          f"{elapsed:.1f} ms per request in-process, last status {status}")
    print(profiler.output_text(unicode=True, color=False, show_all=False))


if __name__ == "__main__":
    main()
