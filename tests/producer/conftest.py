"""The demo story for the producer pages: its four pending requests, its channel, its entitlements."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Organization, User
from tests.producer.channel_world import channel, staff_client  # noqa: F401 (fixtures of the channel pages)

HX = {"HX-Request": "true"}


@pytest.fixture
def demo(app):
    result = app.test_cli_runner().invoke(args=["portal", "demo"])
    assert result.exit_code == 0, result.output


def user(email: str) -> User:
    return db.session.scalar(select(User).where(User.email == email))


def org(name: str) -> Organization:
    return db.session.scalar(select(Organization).where(Organization.name == name))


@pytest.fixture
def staff(demo, login_as):
    return login_as(user("staff@acme.example"), org("Acme Software"))


@pytest.fixture
def admin(demo, login_as):
    return login_as(user("admin@acme.example"), org("Acme Software"))
