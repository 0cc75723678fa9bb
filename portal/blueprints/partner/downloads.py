"""Software downloads of a partner: releases of the products on the entitlements its attachments
let it download (and its stock), of the customer it works for when it chose one."""

from __future__ import annotations

from portal.auth_session import current_actor
from portal.blueprints.downloads import downloads_for, kind_label, send_release_file
from portal.blueprints.partner import bp
from portal.web import render


@bp.get("/downloads")
def downloads():
    actor = current_actor()
    return render("partner/downloads.html", products=downloads_for(actor), kind_label=kind_label,
                  file_endpoint="partner.download_file")


@bp.get("/downloads/files/<int:file_id>")
def download_file(file_id: int):
    return send_release_file(current_actor(), file_id)
