"""Forms of the customer portal.

Several forms of one kind share a page (one per line, one per activation), so each is built
with a prefix (``line-<id>``, ``activation-<id>``) that keeps ids and names apart. CSRF is
checked for every POST by ``CSRFProtect`` (the ``X-CSRFToken`` header htmx sends, or the
page's ``csrf_token`` field), so these forms carry no token of their own.
"""

from __future__ import annotations

import re

from wtforms import IntegerField, StringField
from wtforms.validators import DataRequired, InputRequired, Length, NumberRange, Optional, ValidationError

from portal.forms import PortalForm

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")
MAX_SEATS = 1_000_000


def no_control_characters(form, field) -> None:
    if field.data and CONTROL_CHARACTERS.search(field.data):
        raise ValidationError("Use letters, digits, spaces and punctuation only.")


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class _Form(PortalForm):
    class Meta:
        csrf = False  # CSRFProtect checks every POST of the app (see the module docstring)


class ActivateForm(_Form):
    """Activate seats of one line on a host. The host id's rules are the service's
    (``services.activations.clean_host_id``): one message, one place."""

    host_id = StringField("Host ID", filters=[_strip], validators=[
        DataRequired("Enter the host ID."), Length(max=128, message="A host ID is at most 128 characters."),
        no_control_characters,
    ])
    seats = IntegerField("Seats", default=1, validators=[
        InputRequired("Enter how many seats."),
        NumberRange(min=1, max=MAX_SEATS, message=f"Enter a number of seats from 1 to {MAX_SEATS:,}."),
    ])
    friendly_name = StringField("Name", filters=[_strip], description="A name you recognise the host by.",
                                validators=[Optional(), Length(max=200), no_control_characters])


class RehostForm(_Form):
    """Move an activation's seats to another host (return and activate in one step)."""

    host_id = StringField("New host ID", filters=[_strip], validators=[
        DataRequired("Enter the new host ID."), Length(max=128, message="A host ID is at most 128 characters."),
        no_control_characters,
    ])


class ActionForm(_Form):
    """A button that acts on one object (return seats): nothing to fill in."""
