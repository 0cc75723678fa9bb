"""Forms of the producer's channel pages: partners, channel edges, application decisions."""

from __future__ import annotations

from wtforms import BooleanField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, Length, Optional

from portal.blueprints.customer.organization import OrganizationForm, _blank_to_none
from portal.forms import PortalForm

KIND_LABELS = {"distributor": "Distributor", "reseller": "Reseller", "service_provider": "Service provider"}
STATUS_LABELS = {"active": "Active", "pending": "Pending", "suspended": "Suspended"}


class PartnerForm(OrganizationForm):
    """A new partner: its kind, whether it holds stock, name and contacts."""

    kind = SelectField("Kind of partner", choices=[SelectChoice(k, v) for k, v in KIND_LABELS.items()],
                       validators=[DataRequired("Choose the kind of partner.")])
    stocking = BooleanField("Stocking partner", description="Orders may be delivered into its stock; it assigns "
                                                             "them to customers later.")
    supplier_id = SelectField("Supplied by", validate_choice=False, validators=[Optional()],
                              description="A first channel edge; add more on the channel page.")


class PartnerEditForm(OrganizationForm):
    stocking = BooleanField("Stocking partner")


class StatusForm(PortalForm):
    status = SelectField("Status", choices=[SelectChoice(k, v) for k, v in STATUS_LABELS.items()])


class EdgeForm(PortalForm):
    supplier_id = SelectField("Supplier", validate_choice=False, validators=[DataRequired("Choose the supplier.")])
    buyer_id = SelectField("Buyer", validate_choice=False, validators=[DataRequired("Choose the buyer.")])


class RemoveEdgeForm(PortalForm):
    pass


class DecisionForm(PortalForm):
    decision = HiddenField(validators=[DataRequired()])
    note = TextAreaField("Note to the applicant", filters=[_blank_to_none], validators=[Optional(), Length(max=2000)])


class SubsidiaryForm(PortalForm):
    name = StringField("Name of the subsidiary or site", filters=[_blank_to_none], validators=[
        DataRequired("Enter a name."), Length(max=200, message="Keep the name under 200 characters.")])


class ParentForm(PortalForm):
    parent = StringField("New parent (exact name, or empty for top level)", filters=[_blank_to_none],
                         validators=[Optional(), Length(max=200)])
