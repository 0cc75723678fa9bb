"""The floor: a page that does almost nothing, served beside the portal for comparison.

Bare Flask + Flask-SQLAlchemy on the same database: one indexed query (50 entitlements by
primary key) rendered through a Jinja template. ``gunicorn bench.floor:app`` with
``BENCH_FLOOR_DATABASE_URL`` set.
"""

from __future__ import annotations

import os

from flask import Flask, render_template_string
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import text

from portal.database import normalize_database_url

app = Flask(__name__)
app.config["SQLALCHEMY_DATABASE_URI"] = normalize_database_url(
    os.environ.get("BENCH_FLOOR_DATABASE_URL", "sqlite:///:memory:"))
app.config["SQLALCHEMY_ENGINE_OPTIONS"] = {"pool_pre_ping": True}  # as the portal's
db = SQLAlchemy(app)

QUERY = text("SELECT id, code, status, purchase_date FROM entitlement WHERE id >= :start ORDER BY id LIMIT 50")
TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Floor</title></head>
<body><h1>50 entitlements</h1>
<table>{% for row in rows %}<tr><td>{{ row.id }}</td><td>{{ row.code }}</td><td>{{ row.status }}</td>
<td>{{ row.purchase_date }}</td></tr>{% endfor %}</table></body></html>"""


@app.get("/")
def index():
    rows = db.session.execute(QUERY, {"start": 100}).all()
    return render_template_string(TEMPLATE, rows=rows)


@app.get("/healthz")
def healthz():
    return {"status": "ok"}
