"""Forms of the partner pages and the requests page of the customer portal.

What a form can check alone (lengths, control characters, a choice among fixed values) it
checks here; what needs the actor (is this partner attachable, is this entitlement ours) the
view checks through the policy and reports next to the same field. CSRF is checked for every
POST by ``CSRFProtect`` (the ``X-CSRFToken`` header htmx sends, or the page's ``csrf_token``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from wtforms import BooleanField, SelectField, SelectMultipleField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional, ValidationError

from portal.forms import PortalForm

MAX_ENTITLEMENTS_AT_ONCE = 500
MESSAGE_MAX = 2000


def id_or_none(value) -> int | None:
    """An id from a form: a positive number an INTEGER column holds, else None (reported by the view)."""
    if isinstance(value, int):
        return value
    text = (value or "").strip()
    if text.isascii() and text.isdigit() and 0 < len(text) <= 10 and int(text) <= 2**31 - 1:
        return int(text)
    return None


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class PermissionFields(PortalForm):
    """The three checkboxes; ``permissions`` is what was ticked, ``permission_errors`` what is wrong."""

    view = BooleanField("View", default=True)
    download = BooleanField("Download")
    activate = BooleanField("Activate")

    @property
    def permissions(self) -> list[str]:
        return [name for name in ("view", "download", "activate") if self[name].data]

    @property
    def permission_errors(self) -> list[str]:
        return [*self.view.errors, *self.download.errors, *self.activate.errors]

    def check_permissions(self) -> bool:
        if not self.view.data:
            if self.download.data or self.activate.data:
                self.view.errors = ["Download and Activate need View: a partner cannot use what it cannot see."]
            else:
                self.view.errors = ["Tick at least View."]
            return False
        return True


@dataclass(frozen=True)
class Checkbox:
    """What the permission macro reads of a checkbox (``name``, ``id``, ``data``, ``label.text``),
    without a form behind it."""

    name: str
    text: str
    data: bool

    @property
    def id(self) -> str:
        return self.name

    @property
    def label(self) -> Checkbox:
        return self


@dataclass(frozen=True)
class PermissionBoxes:
    """An attachment's permissions as the unsubmitted ``PermissionsForm`` shows them, for the rows
    of a table: the same names and markup, without building a form per row (25 forms cost a page
    more than its queries). A submitted form, with its errors, is shown as itself."""

    view: Checkbox
    download: Checkbox
    activate: Checkbox
    permission_errors: list = field(default_factory=list)

    @classmethod
    def of(cls, prefix: str, *, view: bool, download: bool, activate: bool) -> PermissionBoxes:
        fields = PermissionFields
        return cls(*(Checkbox(f"{prefix}-{name}", getattr(fields, name).args[0], value)
                     for name, value in (("view", view), ("download", download), ("activate", activate))))


class EntitlementChoice(PermissionFields):
    """Entitlements chosen by their ids; the view checks each is one of ours."""

    entitlements = SelectMultipleField("Entitlements", coerce=id_or_none, validate_choice=False)

    def check_entitlement_count(self) -> bool:
        chosen = self.entitlements.data or []
        if not chosen:
            self.entitlements.errors = ["Choose at least one entitlement."]
            return False
        if len(chosen) > MAX_ENTITLEMENTS_AT_ONCE:
            self.entitlements.errors = [f"Choose at most {MAX_ENTITLEMENTS_AT_ONCE} entitlements at once."]
            return False
        return True


class AttachForm(EntitlementChoice):
    """Attach a partner of the producer's channel to one or many of our entitlements."""

    partner = SelectField("Partner", coerce=id_or_none, validate_choice=False,
                          validators=[DataRequired("Choose a partner.")])

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        return self.check_permissions() & self.check_entitlement_count() & ok


class InviteForm(EntitlementChoice):
    """Invite a partner that is not on the portal yet: producer staff review it first."""

    company = StringField("Company name", filters=[_strip], validators=[
        DataRequired("Enter the company's name."), Length(max=200, message="Keep the name under 200 characters.")])
    email = StringField("Admin's email", filters=[_strip],
                        description="The person who will manage the partner's users; the invitation goes there.",
                        validators=[DataRequired("Enter an email address."),
                                    Length(max=254, message="An email address is at most 254 characters.")])
    message = TextAreaField("Message to producer staff", filters=[_strip], validators=[
        Optional(), Length(max=MESSAGE_MAX, message=f"Keep the message under {MESSAGE_MAX:,} characters.")])

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        return self.check_permissions() & self.check_entitlement_count() & ok


class PermissionsForm(PermissionFields):
    """Change what one attachment allows."""

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        if ok and not self.view.data and not (self.download.data or self.activate.data):
            self.view.errors = ["A partner attached to an entitlement can always view it; to take its access "
                                "away, revoke the attachment."]
            return False
        return self.check_permissions() & ok


class ActionForm(PortalForm):
    """A button that acts on one object (revoke, withdraw): nothing to fill in."""


class DecisionForm(PortalForm):
    """Approve or reject a request addressed to us, with an optional note for the requester."""

    decision = StringField("Decision", validators=[DataRequired("Choose Approve or Reject.")])
    note = TextAreaField("Note to the requester", filters=[_strip], validators=[
        Optional(), Length(max=MESSAGE_MAX, message=f"Keep the note under {MESSAGE_MAX:,} characters.")])

    def validate_decision(self, field) -> None:
        if field.data not in ("approve", "reject"):
            raise ValidationError("Choose Approve or Reject.")


class TransferForm(PortalForm):
    """Ask producer staff to move one of our entitlements to an organization outside our tree."""

    code = StringField("Entitlement code", filters=[_strip], validators=[
        DataRequired("Enter the entitlement's code."), Length(max=32, message="An entitlement code is shorter.")])
    recipient = StringField("Recipient organization", filters=[_strip],
                            description="Its name on the portal, exactly (capitals do not matter).",
                            validators=[DataRequired("Enter the organization's name."),
                                        Length(max=200, message="Keep the name under 200 characters.")])
    message = TextAreaField("Message to producer staff", filters=[_strip], validators=[
        Optional(), Length(max=MESSAGE_MAX, message=f"Keep the message under {MESSAGE_MAX:,} characters.")])
