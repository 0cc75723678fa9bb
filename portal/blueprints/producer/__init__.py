from flask import Blueprint

from portal.blueprints.guards import require_area

bp = Blueprint("producer", __name__)
require_area(bp, "producer")

from portal.blueprints.producer import routes  # noqa: E402,F401
from portal.blueprints.producer import customers, exchange, partners, reports  # noqa: E402,F401,I001
