from wtforms import EmailField, HiddenField, IntegerField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Email, Length, Optional

from portal.forms import PortalForm, blank_if_control_characters


class LocalLoginForm(PortalForm):
    email = EmailField("Email", validators=[DataRequired(), Email(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=500)])
    next = HiddenField(filters=[blank_if_control_characters])  # junk here never blocks a sign-in


class SwitchOrgForm(PortalForm):
    org_id = IntegerField("Organization", validators=[DataRequired()])


class LogoutForm(PortalForm):
    pass


class InvitationForm(PortalForm):
    pass


class RequestAccessForm(PortalForm):
    organization = StringField("Organization you work for", validators=[DataRequired(), Length(max=200)])
    message = TextAreaField("Message to its administrators", validators=[Optional(), Length(max=2000)])
