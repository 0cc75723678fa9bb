"""Gunicorn settings for the bench: quiet, and every response says how many SQL statements it ran.

The count lives here, in the bench's own server configuration, not in the product: after a
worker has loaded the app, an SQLAlchemy ``before_cursor_execute`` listener counts the
statements (transaction control left out) and a WSGI wrapper puts the count of each request
in an ``X-Bench-Queries`` response header. Sync workers run one request at a time, so a
per-process counter is exact. (A streamed response would be counted up to its first byte.)
"""

accesslog = None
errorlog = "-"
loglevel = "warning"
timeout = 120
graceful_timeout = 5

TRANSACTION_CONTROL = ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")


def post_worker_init(worker):
    from sqlalchemy import event

    app = worker.wsgi
    if not hasattr(app, "app_context"):
        return  # not a Flask app (nothing to count)
    from flask_sqlalchemy import SQLAlchemy

    extension = app.extensions.get("sqlalchemy")
    if not isinstance(extension, SQLAlchemy):
        return
    with app.app_context():
        engine = extension.engine
    counter = [0]

    @event.listens_for(engine, "before_cursor_execute")
    def _count(conn, cursor, statement, parameters, context, executemany):
        if not statement.lstrip().upper().startswith(TRANSACTION_CONTROL):
            counter[0] += 1

    inner = app.wsgi_app

    def counting(environ, start_response):
        counter[0] = 0

        def _start(status, headers, exc_info=None):
            headers.append(("X-Bench-Queries", str(counter[0])))
            return start_response(status, headers, exc_info)

        return inner(environ, _start)

    app.wsgi_app = counting
