"""Acting on behalf of a customer, within our attachment: the customer portal's seat controls
(activate, return, rehost, the .lic certificate) under the partner portal's URLs.

The views are ``portal.blueprints.seats``'s; the policy decides with our own attachment
(``activate`` for seats, ``download`` for certificates): a view-only attachment gets no buttons
and 403 for a forged POST; an entitlement we do not see is 404. The services record each act as
"U of P on behalf of C", which the customer reads in its audit and on the activation.
"""

from __future__ import annotations

from portal.blueprints import seats
from portal.blueprints.partner import bp
from portal.blueprints.partner.entitlements import entitlement_page

MAX_ID = 2**31 - 1  # larger ids exist nowhere: 404 before any SQL


@bp.post(f"/lines/<int(max={MAX_ID}):line_id>/activations")
def activate_seats(line_id: int):
    """Activate seats of a customer's line on a host, on its behalf."""
    return seats.activate_seats(line_id, entitlement_page)


@bp.post(f"/activations/<int(max={MAX_ID}):activation_id>/return")
def return_seats(activation_id: int):
    """Return an activation's seats on the customer's behalf."""
    return seats.return_seats(activation_id, entitlement_page)


@bp.post(f"/activations/<int(max={MAX_ID}):activation_id>/rehost")
def rehost_seats(activation_id: int):
    """Move an activation's seats to a new host on the customer's behalf."""
    return seats.rehost_seats(activation_id, entitlement_page)


@bp.get(f"/activations/<int(max={MAX_ID}):activation_id>.lic")
def certificate(activation_id: int):
    """An activation's license certificate, when our attachment allows downloads."""
    return seats.certificate(activation_id)
