"""Errors a service raises for the caller to show next to a field or as a 4xx."""

from __future__ import annotations


class ServiceError(Exception):
    """Bad input or a state that forbids the action; ``field`` names the form field."""

    status = 422

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


class NotAllowed(ServiceError):
    """The actor may not do this. Views answer 404 when the object is not visible at all."""

    status = 403


class Conflict(ServiceError):
    status = 409
