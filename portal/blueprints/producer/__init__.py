from flask import Blueprint

from portal.blueprints.guards import require_area

bp = Blueprint("producer", __name__)
require_area(bp, "producer")

from portal.blueprints.producer import (  # noqa: E402,F401
    customers,
    exchange,
    partners,
    reports,
    routes,  # noqa: E402,F401
)
