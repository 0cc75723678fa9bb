"""The producer portal (a shell for now: the channel at a glance)."""

from sqlalchemy import func, select

from portal.blueprints.producer import bp
from portal.extensions import db
from portal.models import PortalRequest
from portal.models.entitlements import RowCount
from portal.web import render


@bp.get("/")
def home():
    """Landing page of producer staff."""
    # Kept in the same transaction as every insert and delete: no counting of 200,000 rows here.
    rows = dict(db.session.execute(select(RowCount.name, RowCount.value)).all())
    counts = {name.removeprefix("organization."): value for name, value in rows.items()
              if name.startswith("organization.")}
    pending = db.session.scalar(select(func.count(PortalRequest.id)).where(PortalRequest.state == "pending"))
    return render("producer/home.html", counts=counts, entitlement_count=rows.get("entitlement", 0), pending=pending)
