"""Users, password checks and invitations (the link goes out through the outbox)."""

import threading
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.database import begin_write
from portal.extensions import db
from portal.models import AuditEvent, Invitation, Membership, OutboxEmail, User, utcnow
from portal.services.accounts import (
    accept_invitation,
    accept_invitation_with_password,
    authenticate_local,
    create_user,
    find_invitation,
    invitation_may_set_password,
    invite_user,
    mask_email,
)
from portal.services.errors import Conflict, NotAllowed, ServiceError
from tests.factories import PASSWORD

NEW_PASSWORD = "twelve chars and more"


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


def _audit_actions() -> list[str]:
    return list(db.session.scalars(select(AuditEvent.action).order_by(AuditEvent.id)))


@pytest.fixture
def invited(make):
    """Contoso Group invites alice@contoso.example as member; the raw token."""
    customer = make.customer("Contoso Group")
    _, token = invite_user(make.system, customer, "Alice@Contoso.example", "member")
    db.session.commit()
    return {"org": customer, "token": token}


def test_invitation_sets_the_password_of_a_new_account(invited):
    before = _audit_actions()
    user = accept_invitation_with_password(invited["token"], NEW_PASSWORD, display_name="  Alice Liddell ",
                                           request_id="req-1", client_addr="192.0.2.7")
    db.session.commit()
    assert (user.email, user.display_name) == ("alice@contoso.example", "Alice Liddell")
    assert user.password_hash.startswith("scrypt:")
    assert authenticate_local("alice@contoso.example", NEW_PASSWORD) == user
    (membership,) = user.memberships
    assert (membership.org_id, membership.role) == (invited["org"].id, "member")
    assert find_invitation(invited["token"]) is None
    events = db.session.scalars(select(AuditEvent).order_by(AuditEvent.id).offset(len(before))).all()
    assert [(e.action, e.user_id, e.request_id, e.client_addr) for e in events] == [
        ("user.create", user.id, "req-1", "192.0.2.7"), ("invitation.accept", user.id, "req-1", "192.0.2.7")]
    with pytest.raises(ServiceError, match="not valid"):
        accept_invitation_with_password(invited["token"], "another password!!")


def _has_password(make, org):
    return make.user(org, email="alice@contoso.example", password=PASSWORD)


def _has_identity(make, org):
    user = make.user(org, email="alice@contoso.example")
    make.identity(user, "https://op.example", "alice")
    db.session.delete(user.memberships[0])  # an identity alone is enough to refuse
    db.session.commit()
    return user


def _belongs_elsewhere(make, org):
    return make.user(make.customer("Fabrikam Inc"), email="alice@contoso.example")  # no password, no identity


@pytest.mark.parametrize("existing", [_has_password, _has_identity, _belongs_elsewhere])
def test_invitation_never_sets_the_password_of_an_account_in_use(make, invited, existing):
    """Whoever gets hold of the link must not take over an account: its owner signs in, then accepts."""
    user = existing(make, invited["org"])
    hash_before, memberships_before = user.password_hash, len(user.memberships)
    events_before = _audit_actions()
    assert invitation_may_set_password(find_invitation(invited["token"])) is False
    with pytest.raises(Conflict, match="has an account already"):
        accept_invitation_with_password(invited["token"], NEW_PASSWORD)
    db.session.rollback()
    db.session.expire_all()
    assert user.password_hash == hash_before
    assert len(user.memberships) == memberships_before
    assert find_invitation(invited["token"]) is not None
    assert _audit_actions() == events_before


def test_invitation_sets_the_password_of_an_unclaimed_account(make, invited):
    """An account nobody can sign in to and that belongs nowhere is the invited person's to claim."""
    user = create_user("alice@contoso.example", "")
    db.session.commit()
    assert invitation_may_set_password(find_invitation(invited["token"])) is True
    assert accept_invitation_with_password(invited["token"], NEW_PASSWORD, display_name="Alice") == user
    db.session.commit()
    assert authenticate_local("alice@contoso.example", NEW_PASSWORD) == user
    assert user.display_name == "Alice"
    assert _audit_actions()[-2:] == ["user.set_password", "invitation.accept"]


@pytest.mark.parametrize(("password", "message"), [
    ("", "at least 12"), ("eleven char", "at least 12"), ("x" * 501, "at most 500")])
def test_invitation_password_rules(invited, password, message):
    events_before = _audit_actions()
    with pytest.raises(ServiceError, match=message) as error:
        accept_invitation_with_password(invited["token"], password)
    assert error.value.field == "password"
    db.session.rollback()
    assert db.session.scalar(select(func.count(User.id)).where(User.email == "alice@contoso.example")) == 0
    assert find_invitation(invited["token"]) is not None
    assert _audit_actions() == events_before


@pytest.fixture
def app_config():
    return {"SQLALCHEMY_ENGINE_OPTIONS": {"pool_size": 4, "max_overflow": 0}}


def test_two_uses_of_one_link_at_once_make_one_account(app, invited):
    """Each use in its own connection and transaction: the second waits for the first, then finds it used."""
    barrier = threading.Barrier(2)
    results: list[str] = []
    errors: list[BaseException] = []

    def use(number: int) -> None:
        with app.app_context():
            try:
                barrier.wait(timeout=30)
                begin_write()  # SQLite: as a request would (the second waits here for the first's commit)
                accept_invitation_with_password(invited["token"], f"{NEW_PASSWORD} {number}")
                db.session.commit()
                results.append("ok")
            except ServiceError as error:
                db.session.rollback()
                results.append(error.message)
            except BaseException as error:  # surfaced below with the test's failure
                errors.append(error)
            finally:
                db.session.remove()

    threads = [threading.Thread(target=use, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    assert sorted(results) == ["This invitation link is not valid any more.", "ok"]
    db.session.expire_all()
    assert db.session.scalar(select(func.count(User.id)).where(User.email == "alice@contoso.example")) == 1
    assert db.session.scalar(select(func.count(Membership.id)).where(Membership.org_id == invited["org"].id)) == 1
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == "invitation.accept")) == 1


def test_mask_email():
    assert mask_email("alice@contoso.example") == "a•••@contoso.example"
    assert mask_email("a@b.example") == "a•••@b.example"
