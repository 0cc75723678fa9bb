from flask import Blueprint

from portal.blueprints.guards import require_area

bp = Blueprint("partner", __name__)
require_area(bp, "partner")


@bp.context_processor
def _working_for():
    """The customer the partner works for, for the top bar (one look-up, when asked)."""
    from portal.auth_session import current_actor
    from portal.extensions import db
    from portal.models import Organization

    def working_for():
        actor = current_actor()
        return db.session.get(Organization, actor.customer_id) if actor and actor.customer_id else None

    return {"working_for": working_for}


from portal.blueprints.partner import (  # noqa: E402,F401
    activations,
    downloads,
    entitlements,
    notices,
    routes,
    stock,
)
