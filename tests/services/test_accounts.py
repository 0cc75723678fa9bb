"""Users, password checks and invitations (the link goes out through the outbox)."""

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Invitation, Membership, OutboxEmail, User, utcnow
from portal.services.accounts import (
    accept_invitation,
    authenticate_local,
    create_user,
    find_invitation,
    invite_user,
)
from portal.services.errors import Conflict, NotAllowed, ServiceError


def test_emails_are_unique_case_insensitively(app):
    create_user("Ada@Example.com", "Ada", password="long enough password")
    db.session.commit()
    with pytest.raises(Conflict):
        create_user("ada@EXAMPLE.com", "Ada again")
    assert db.session.scalar(select(User.email)) == "ada@example.com"


def test_passwords_are_hashed_with_scrypt_and_checked(app):
    user = create_user("ada@example.com", "Ada", password="long enough password")
    db.session.commit()
    assert user.password_hash.startswith("scrypt:")
    assert authenticate_local("ADA@example.com", "long enough password") == user
    assert authenticate_local("ada@example.com", "wrong") is None
    assert authenticate_local("nobody@example.com", "long enough password") is None
    with pytest.raises(ServiceError) as error:
        create_user("bob@example.com", "Bob", password="short")
    assert error.value.field == "password"


def test_invitation_is_mailed_and_works_once(make):
    customer = make.customer("Contoso")
    admin = make.actor(customer, "admin")
    invitation, token = invite_user(admin, customer, "New.Person@contoso.com", "member")
    db.session.commit()
    mail = db.session.scalar(select(OutboxEmail))
    assert mail.to_addr == "new.person@contoso.com"
    assert f"/invitations/{token}" in mail.body_text
    assert token not in (invitation.token_hash or "")  # only the hash is stored
    newcomer = create_user("new.person@contoso.com", "New Person")
    membership = accept_invitation(token, newcomer)
    db.session.commit()
    assert (membership.org_id, membership.role) == (customer.id, "member")
    assert find_invitation(token) is None
    with pytest.raises(ServiceError, match="not valid"):
        accept_invitation(token, newcomer)


def test_invitation_expires_after_seven_days(make):
    customer = make.customer()
    invitation, token = invite_user(make.actor(customer), customer, "late@contoso.com", "member")
    db.session.commit()
    assert invitation.expires_at - invitation.created_at == timedelta(days=7)
    invitation.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert find_invitation(token) is None
    with pytest.raises(ServiceError):
        accept_invitation(token, create_user("late@contoso.com", "Late"))


def test_only_admins_of_the_organization_invite(make):
    customer = make.customer()
    other = make.customer()
    with pytest.raises(NotAllowed):
        invite_user(make.actor(customer, "member"), customer, "x@contoso.com", "member")
    with pytest.raises(NotAllowed):
        invite_user(make.actor(other, "admin"), customer, "x@contoso.com", "member")
    with pytest.raises(ServiceError) as error:
        invite_user(make.actor(customer, "admin"), customer, "x@contoso.com", "staff")
    assert error.value.field == "role"
    db.session.rollback()
    assert db.session.scalar(select(func.count(Invitation.id))) == 0
    assert db.session.scalar(select(func.count(OutboxEmail.id))) == 0


def test_cli_invite(app, make):
    make.customer("Fabrikam Inc")
    result = app.test_cli_runner().invoke(args=["portal", "invite", "it@fabrikam.com", "Fabrikam Inc", "admin"])
    assert result.exit_code == 0, result.output
    assert "Invitation queued for it@fabrikam.com" in result.output
    assert db.session.scalar(select(func.count(OutboxEmail.id))) == 1
    bad = app.test_cli_runner().invoke(args=["portal", "invite", "it@fabrikam.com", "Nope", "admin"])
    assert bad.exit_code != 0 and "No organization named" in bad.output
    assert db.session.scalar(select(func.count(Membership.id))) == 0
