from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, IntegerField, PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Email, Length, Optional


class LocalLoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=500)])
    next = HiddenField()


class SwitchOrgForm(FlaskForm):
    org_id = IntegerField("Organization", validators=[DataRequired()])


class LogoutForm(FlaskForm):
    pass


class InvitationForm(FlaskForm):
    pass


class WithdrawForm(FlaskForm):
    pass


class RequestAccessForm(FlaskForm):
    organization = StringField("Organization you work for", validators=[DataRequired(), Length(max=200)])
    message = TextAreaField("Message to its administrators", validators=[Optional(), Length(max=2000)])
