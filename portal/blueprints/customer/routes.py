"""The customer portal (a shell for now: what the customer sees, counted by the policy)."""

from sqlalchemy import func, select

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.customer import bp
from portal.extensions import db
from portal.web import render


@bp.get("/")
def home():
    """Landing page of a customer user: its organization and what it may see."""
    actor = current_actor()
    entitlements = db.session.scalar(
        select(func.count()).select_from(policy.visible_entitlements(actor).subquery())
    )
    subtree = db.session.scalar(
        select(func.count()).select_from(policy.subtree_org_ids(actor.org).subquery())
    )
    return render("customer/home.html", entitlement_count=entitlements, org_count=subtree,
                  path=policy.hierarchy_path(actor.org))
