from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, IntegerField, PasswordField
from wtforms.validators import DataRequired, Email, Length


class LocalLoginForm(FlaskForm):
    email = EmailField("Email", validators=[DataRequired(), Email(), Length(max=254)])
    password = PasswordField("Password", validators=[DataRequired(), Length(max=500)])
    next = HiddenField()


class SwitchOrgForm(FlaskForm):
    org_id = IntegerField("Organization", validators=[DataRequired()])


class LogoutForm(FlaskForm):
    pass
