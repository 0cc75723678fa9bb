from wtforms import EmailField, HiddenField, IntegerField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Email, EqualTo, Length, Optional

from portal.forms import PortalForm, blank_if_control_characters
from portal.services.accounts import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH


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


class WithdrawForm(PortalForm):
    pass


class SetPasswordForm(PortalForm):
    """From an invitation link, with local sign-in on: the invited account's password."""

    display_name = StringField("Your name", validators=[Optional(), Length(max=200)])
    password = PasswordField("New password", description=f"At least {PASSWORD_MIN_LENGTH} characters.", validators=[
        DataRequired("Choose a password."),
        Length(min=PASSWORD_MIN_LENGTH, message=f"Use at least {PASSWORD_MIN_LENGTH} characters."),
        Length(max=PASSWORD_MAX_LENGTH, message=f"Use at most {PASSWORD_MAX_LENGTH} characters."),
    ])
    confirm = PasswordField("Confirm the password", validators=[
        DataRequired("Type the password again."),
        EqualTo("password", message="The two passwords are not the same."),
    ])


class RequestAccessForm(PortalForm):
    organization = StringField("Organization you work for", validators=[DataRequired(), Length(max=200)])
    message = TextAreaField("Message to its administrators", validators=[Optional(), Length(max=2000)])
