"""portal/paging.py: statements built once, with their search and their page as parameters."""

from __future__ import annotations

import pytest
from sqlalchemy import String, literal, select

from portal.extensions import db
from portal.paging import contains, contains_param

TEXTS = ["Contoso 50% off", "contoso_de", "a/b\\c", "CONTOSO", "x%y_z", "100%", "under_score", "slash//x"]


@pytest.mark.parametrize("needle", ["contoso", "50%", "%", "_", "o_d", "a/b", "/", "//", "\\", "X%Y_Z", "%y_"])
def test_a_bound_search_matches_what_icontains_with_autoescape_matches(app, needle):
    """``contains(column, "q")`` with ``contains_param(text)`` finds exactly the rows that
    ``column.icontains(text, autoescape=True)`` finds: % and _ stand for themselves."""
    for text in TEXTS:
        column = literal(text, String)
        expected = db.session.scalar(select(column.icontains(needle, autoescape=True)))
        found = db.session.scalar(select(contains(column, "q")), {"q": contains_param(needle)})
        assert bool(found) == bool(expected), (text, needle)
