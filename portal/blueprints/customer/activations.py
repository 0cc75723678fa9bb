"""Activations in place on an entitlement's page: activate seats of a line on a host, return
them, move them to another host (rehost), and download an activation's license certificate.

The views live in ``portal.blueprints.seats`` (the partner portal offers the same controls on
behalf of its customers); this module gives them the customer portal's URLs and its page.
"""

from __future__ import annotations

from portal.blueprints import seats
from portal.blueprints.customer import bp
from portal.blueprints.customer.entitlements import entitlement_page

MAX_ID = 2**31 - 1  # larger ids exist nowhere: 404 before any SQL


@bp.post(f"/lines/<int(max={MAX_ID}):line_id>/activations")
def activate_seats(line_id: int):
    """Activate seats of a line on a host."""
    return seats.activate_seats(line_id, entitlement_page)


@bp.post(f"/activations/<int(max={MAX_ID}):activation_id>/return")
def return_seats(activation_id: int):
    """Return an activation's seats: they are free again at once."""
    return seats.return_seats(activation_id, entitlement_page)


@bp.post(f"/activations/<int(max={MAX_ID}):activation_id>/rehost")
def rehost_seats(activation_id: int):
    """Move an activation's seats to a new host: return and activate in one transaction."""
    return seats.rehost_seats(activation_id, entitlement_page)


@bp.get(f"/activations/<int(max={MAX_ID}):activation_id>.lic")
def certificate(activation_id: int):
    """The license certificate of an active activation: a compact JWS, verifiable offline."""
    return seats.certificate(activation_id)
