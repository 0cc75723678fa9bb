from flask import Blueprint

from portal.blueprints.guards import require_area

bp = Blueprint("partner", __name__)
require_area(bp, "partner")

from portal.blueprints.partner import routes  # noqa: E402,F401
