from flask import Blueprint

from portal.blueprints.guards import require_area

bp = Blueprint("customer", __name__)
require_area(bp, "customer")

from portal.blueprints.customer import routes  # noqa: E402,F401
