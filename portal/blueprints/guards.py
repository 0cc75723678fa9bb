"""Blueprint-level guards: every route of a role area requires sign-in and that role.

A route added to a guarded blueprint cannot be left open by forgetting a decorator.
Anything the actor may not see answers 404, exactly like something that does not exist.
"""

from __future__ import annotations

from flask import Blueprint, abort, make_response, redirect, request, url_for
from flask_login import current_user

from portal.auth_session import current_actor


def login_redirect():
    target = url_for("auth.login", next=request.full_path.rstrip("?") if request.method == "GET" else None)
    if request.headers.get("HX-Request"):
        response = make_response("", 401)
        response.headers["HX-Redirect"] = target
        return response
    return redirect(target)


def require_area(bp: Blueprint, area: str) -> None:
    """Install the guard on ``bp``: signed in, a membership, and working in ``area``."""

    @bp.before_request
    def _guard():
        if not current_user.is_authenticated:
            return login_redirect()
        actor = current_actor()
        if actor is None:
            return redirect(url_for("public.no_access"))
        if actor.area != area:
            abort(404)
        return None
