"""The producer portal: one blueprint, a module per page family (STYLE.md, "Growing the house").

Other page families (partners, customers, catalog, import, reports) register on the same ``bp``
from their own modules; the layout's nav shows a link only for endpoints that exist.
"""

from flask import Blueprint, current_app

from portal.blueprints.guards import require_area

bp = Blueprint("producer", __name__)
require_area(bp, "producer")


@bp.context_processor
def _producer_globals() -> dict:
    return {"has_endpoint": lambda name: name in current_app.view_functions}


from portal.blueprints.producer import (  # noqa: E402,F401
    audit,
    catalog,
    customers,
    entitlements,
    exchange,
    home,
    mail,
    notifications,
    partners,
    reports,
    requests,
)
