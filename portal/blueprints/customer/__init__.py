from flask import Blueprint

from portal.blueprints.guards import require_area

bp = Blueprint("customer", __name__)
require_area(bp, "customer")

import portal.blueprints.customer.audit  # noqa: E402,F401
import portal.blueprints.customer.inbox  # noqa: E402,F401
import portal.blueprints.customer.organization  # noqa: E402,F401
import portal.blueprints.customer.users  # noqa: E402,F401
from portal.blueprints.customer import routes  # noqa: E402,F401
