"""The base of every form in the portal: what no field may hold, whatever form it is on.

Derive every form from ``PortalForm`` (never from ``FlaskForm`` directly). Each of its fields
then checks the submitted value before its own validators run:

- no control characters (a TextAreaField may hold tab, CR and LF): PostgreSQL refuses a NUL
  in text outright, and the rest is junk nobody types; the message says which field;
- whole numbers within the database's INTEGER range (SQLite overflows on larger ones);

and the form is built from a form-encoded or multipart body only, never from a JSON body
(whose values need not be strings at all). Query-string parameters follow the same rule
through ``portal.web.query_text`` and ``portal.web.query_int``.

A field whose junk is better ignored than refused (a sign-in's ``next``) takes the filter
``blank_if_control_characters``; the check then sees the blank value.
"""

from __future__ import annotations

import re

from flask import request
from flask_wtf import FlaskForm
from markupsafe import Markup, escape
from werkzeug.datastructures import CombinedMultiDict
from wtforms import IntegerField, SelectField, TextAreaField, widgets
from wtforms.validators import NumberRange, StopValidation

CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # Unicode category Cc: C0, DEL, C1
CONTROL_CHARACTERS_BUT_LINES = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")  # tab, LF, CR allowed
CONTROL_CHARACTERS_MESSAGE = "Remove control characters from this field."
INTEGER_MIN, INTEGER_MAX = -(2**31), 2**31 - 1  # an INTEGER column of PostgreSQL
_FROM_REQUEST = object()


def has_control_characters(text: str, *, multiline: bool = False) -> bool:
    """True if ``text`` holds a control character (tab, CR and LF are fine when ``multiline``)."""
    pattern = CONTROL_CHARACTERS_BUT_LINES if multiline else CONTROL_CHARACTERS
    return pattern.search(text) is not None


def blank_if_control_characters(value: str | None) -> str | None:
    """A filter: a value with control characters becomes blank instead of being refused."""
    return "" if isinstance(value, str) and has_control_characters(value) else value


def refuse_hostile_values(form, field) -> None:
    """Run first on every field of a ``PortalForm``: stops the field's validation with a message."""
    values = field.data if isinstance(field.data, list | tuple) else [field.data]
    if not any(isinstance(value, str) for value in values):
        values = field.raw_data or ()  # a number, a date...: what was typed
    multiline = isinstance(field, TextAreaField)
    if any(isinstance(value, str) and has_control_characters(value, multiline=multiline) for value in values):
        raise StopValidation(CONTROL_CHARACTERS_MESSAGE)
    if isinstance(field, IntegerField) and isinstance(field.data, int) and not (
        INTEGER_MIN <= field.data <= INTEGER_MAX
    ):
        # The field's own range says it best ("Enter a number of seats from 1 to 1,000,000.").
        own = next((v.message for v in field.validators if isinstance(v, NumberRange) and v.message), None)
        raise StopValidation(own or f"Enter a number between {INTEGER_MIN} and {INTEGER_MAX}.")


class Select(widgets.Select):
    """WTForms' select with the options written directly: the same markup (``selected`` first,
    as ``html_params`` sorts it) at a fraction of the cost, which counts where a page offers
    hundreds of partners, or the same list in several selects. Options with extra attributes,
    and selects with option groups, go the standard way."""

    def __call__(self, field, **kwargs):
        plain = _plain_choices(field)
        if plain is None and field.has_groups():
            return super().__call__(field, **kwargs)
        kwargs.setdefault("id", field.id)
        if self.multiple:
            kwargs["multiple"] = True
        flags = getattr(field, "flags", {})
        for k in dir(flags):
            if k in self.validation_attrs and k not in kwargs:
                kwargs[k] = getattr(flags, k)
        html = [f"<select {widgets.html_params(name=field.name, **kwargs)}>"]
        if plain is not None:
            # (value, label) pairs read as they are, selected as SelectField.iter_choices decides:
            # WTForms would make two objects of each first (600 partners: most of the page's CPU).
            data, coerce = field.data, field.coerce
            for value, label in plain:
                selected = coerce(value) == data
                label = value if label is None else label
                value = str(value) if isinstance(value, bool) else value
                html += ('<option selected value="' if selected else '<option value="', _escaped(value), '">',
                         _escaped(label or value), "</option>")
            html.append("</select>")
            return Markup("".join(html))  # noqa: S704 (every value in it escaped just above)
        for choice in field._iter_choices_normalized():
            if choice.render_kw:
                html.append(self.render_option(choice))
                continue
            value = str(choice.value) if isinstance(choice.value, bool) else choice.value
            # Each value escaped, then all joined once: no Markup.format, no Markup per option.
            html += ('<option selected value="' if choice.selected else '<option value="', escape(value), '">',
                     escape(choice.label or choice.value), "</option>")
        html.append("</select>")
        return Markup("".join(html))  # noqa: S704 (every value in it escaped just above)


def _escaped(value):
    """``markupsafe.escape(value)``; a number is its digits (nothing to escape)."""
    return str(value) if type(value) is int else escape(value)


def _plain_choices(field):
    """A ``SelectField``'s choices when they are a list of (value, label) pairs (no groups, no
    option attributes), else None."""
    if type(field) is not SelectField:
        return None
    choices = field.choices
    if type(choices) is not list or not all(type(c) is tuple and len(c) == 2 for c in choices):
        return None
    return choices


class PortalForm(FlaskForm):
    """A Flask-WTF form (CSRF included) whose every field refuses control characters.

    Fields of a ``FormField`` are covered when its form is a ``PortalForm`` too; the entries
    of a ``FieldList`` of plain fields are not (make them a ``FormField`` of a ``PortalForm``).
    """

    class Meta(FlaskForm.Meta):
        def bind_field(self, form, unbound_field, options):
            field = super().bind_field(form, unbound_field, options)
            field.validators = [refuse_hostile_values, *field.validators]
            if type(field.widget) is widgets.Select:
                field.widget = Select(multiple=field.widget.multiple)
            return field

    def __init__(self, formdata=_FROM_REQUEST, **kwargs):
        # Flask-WTF would fill a form from a JSON body (ImmutableMultiDict(request.get_json())):
        # a list or a number there is a TypeError, and ints, lists or dicts as field values break
        # every validator that expects a string. A form reads form-encoded and multipart bodies.
        if formdata is _FROM_REQUEST:
            formdata = None
            if self.is_submitted() and request.files:
                formdata = CombinedMultiDict((request.files, request.form))
            elif self.is_submitted() and request.form:
                formdata = request.form
        super().__init__(formdata=formdata, **kwargs)
