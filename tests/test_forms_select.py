"""PortalForm's select writes (value, label) choices itself: the same markup as WTForms' widget."""

from __future__ import annotations

import pytest
from markupsafe import Markup
from wtforms import SelectField, widgets

from portal.forms import PortalForm, Select


class Form(PortalForm):
    partner = SelectField("Partner", coerce=lambda v: None if v in ("", None) else int(v), validate_choice=False)


CHOICES = [("", "Choose a partner…"), *((i, f"Partner <{i}> & \"q\" 'a'") for i in range(1, 40)),
           (True, "yes"), (0, ""), (41, None), (42, Markup("<b>bold</b>")), (-3, "minus")]


@pytest.mark.parametrize("data", [None, 5, "7", 0, 1])
def test_the_markup_is_wtforms_own(app, data):
    with app.test_request_context():
        form = Form(formdata=None, meta={"csrf": False}, partner=data)
        form.partner.choices = list(CHOICES)
        assert isinstance(form.partner.widget, Select)
        ours = form.partner(class_="form-select", required=True)
        theirs = widgets.Select()(form.partner, class_="form-select", required=True)
        assert str(ours) == str(theirs)
        assert "<option selected" in ours


def test_grouped_or_attributed_choices_take_the_standard_way(app):
    with app.test_request_context():
        form = Form(formdata=None, meta={"csrf": False})
        form.partner.choices = {"Resellers": [(1, "One"), (2, "Two")], "Distributors": [(3, "Three")]}
        assert str(form.partner()) == str(widgets.Select()(form.partner))
        assert "<optgroup" in str(form.partner())
        form.partner.choices = [(1, "One", {"disabled": True}), (2, "Two")]
        assert str(form.partner()) == str(widgets.Select()(form.partner))
