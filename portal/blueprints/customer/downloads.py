"""Software downloads of a customer's users: releases of the products its organization (and
every descendant) holds active entitlements for; the rest listed as not entitled, with why."""

from __future__ import annotations

from portal.auth_session import current_actor
from portal.blueprints.customer import bp
from portal.blueprints.downloads import downloads_for, kind_label, send_release_file
from portal.web import render


@bp.get("/downloads")
def downloads():
    actor = current_actor()
    return render("customer/downloads.html", products=downloads_for(actor), kind_label=kind_label,
                  file_endpoint="customer.download_file")


@bp.get("/downloads/files/<int:file_id>")
def download_file(file_id: int):
    return send_release_file(current_actor(), file_id)
