"""The producer portal (a shell for now: the channel at a glance)."""

from sqlalchemy import func, select

from portal.blueprints.producer import bp
from portal.extensions import db
from portal.models import Entitlement, Organization, PortalRequest
from portal.web import render


@bp.get("/")
def home():
    """Landing page of producer staff."""
    counts = dict(db.session.execute(select(Organization.kind, func.count()).group_by(Organization.kind)).all())
    entitlements = db.session.scalar(select(func.count(Entitlement.id)))
    pending = db.session.scalar(select(func.count(PortalRequest.id)).where(PortalRequest.state == "pending"))
    return render("producer/home.html", counts=counts, entitlement_count=entitlements, pending=pending)
