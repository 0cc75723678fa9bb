from flask import Blueprint

from portal.blueprints.guards import require_area

bp = Blueprint("customer", __name__)
require_area(bp, "customer")

import portal.blueprints.customer.partners  # noqa: E402,F401  (partners on our entitlements, who can see this)
import portal.blueprints.customer.requests  # noqa: E402,F401  (requests we made and those waiting for us)
from portal.blueprints.customer import routes  # noqa: E402,F401
