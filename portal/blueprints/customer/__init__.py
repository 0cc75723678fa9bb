"""The customer portal: one blueprint, a module per page family (STYLE.md, "Growing the house")."""

from flask import Blueprint

from portal.blueprints.guards import require_area

bp = Blueprint("customer", __name__)
require_area(bp, "customer")

from portal.blueprints.customer import (  # noqa: E402,F401
    activations,
    audit,
    downloads,
    entitlements,
    home,
    inbox,
    notices,
    organization,
    partners,
    requests,
    users,
)
