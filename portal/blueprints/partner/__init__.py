"""The partner portal: one blueprint, a module per page family (STYLE.md, "Growing the house").

Distributors, resellers and service providers alike: what each sees follows from its
attachments and stock (``portal.policy``), never from its kind.
"""

from urllib.parse import urlencode

from flask import Blueprint, current_app, url_for

from portal.blueprints.guards import require_area

bp = Blueprint("partner", __name__)
require_area(bp, "partner")


def partner_link(endpoint: str, path: str, **args) -> str:
    """The URL of a partner page that may live on another branch of the portal: ``url_for`` when
    the endpoint exists, else its documented path (the URLs are part of the interface)."""
    args = {k: v for k, v in args.items() if v is not None and v != ""}
    if endpoint in current_app.view_functions:
        return url_for(endpoint, **args)
    return path + ("?" + urlencode(args) if args else "")


@bp.context_processor
def _working_for():
    """The customer the partner works for, for the top bar (one look-up, when asked)."""
    from portal.auth_session import current_actor
    from portal.extensions import db
    from portal.models import Organization

    def working_for():
        actor = current_actor()
        return db.session.get(Organization, actor.customer_id) if actor and actor.customer_id else None

    return {"working_for": working_for, "partner_link": partner_link,
            "has_endpoint": lambda endpoint: endpoint in current_app.view_functions}


from portal.blueprints.partner import (  # noqa: E402,F401
    activations,
    customers,
    downloads,
    entitlements,
    home,
    notices,
    organization,
    reports,
    requests,
    stock,
)
