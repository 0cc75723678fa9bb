"""Test data built through the real services, so tests start from states the app can reach."""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from datetime import date, timedelta

from sqlalchemy import select

from portal.database import begin_write
from portal.extensions import db
from portal.models import Identity, Membership, Notification, NotificationMessage, Organization, Product, User
from portal.policy import Actor, system_actor
from portal.services.accounts import create_user
from portal.services.entitlements import LineSpec, attach_partner, create_entitlement
from portal.services.orgs import add_channel_relationship, bootstrap_producer, create_organization

PASSWORD = "correct horse battery"  # noqa: S105
_seq = itertools.count(1)


class Factory:
    def producer(self) -> Organization:
        org = db.session.scalar(select(Organization).where(Organization.kind == "producer"))
        if org is None:
            org = bootstrap_producer("Acme Software", email="channel@acme.example")
            db.session.commit()
        return org

    @property
    def system(self) -> Actor:
        return system_actor(self.producer())

    def org(self, kind: str = "customer", name: str | None = None, parent: Organization | None = None,
            **kw) -> Organization:
        org = create_organization(self.system, kind=kind, name=name or f"{kind.title()} {next(_seq)}",
                                  parent=parent, **kw)
        db.session.commit()
        return org

    def customer(self, name: str | None = None, parent: Organization | None = None, **kw) -> Organization:
        return self.org("customer", name, parent=parent, **kw)

    def partner(self, kind: str = "reseller", name: str | None = None, supplied_by: Organization | None = None,
                **kw) -> Organization:
        """A partner with a channel edge from its supplier (the producer by default)."""
        org = self.org(kind, name, **kw)
        if kind != "service_provider" or supplied_by is not None:
            add_channel_relationship(self.system, supplied_by or self.producer(), org)
            db.session.commit()
        return org

    def user(self, org: Organization, role: str | None = None, email: str | None = None,
             password: str | None = None) -> User:
        """A user with a membership; a local password only when asked (scrypt is slow on purpose)."""
        role = role or ("staff" if org.kind == "producer" else "admin")
        user = create_user(email or f"user{next(_seq)}@example.com", "Test User", password=password)
        db.session.add(Membership(user=user, org=org, role=role))
        db.session.commit()
        return user

    def identity(self, user: User, issuer: str, subject: str) -> Identity:
        """An OIDC identity (issuer + subject) that signs in as ``user``."""
        identity = Identity(user_id=user.id, issuer=issuer, subject=subject)
        db.session.add(identity)
        db.session.commit()
        return identity

    def actor(self, org: Organization, role: str | None = None) -> Actor:
        user = self.user(org, role)
        return Actor(user=user, org=org, role=role or ("staff" if org.kind == "producer" else "admin"))

    def product(self, sku: str | None = None, name: str | None = None) -> Product:
        n = next(_seq)
        product = Product(sku=sku or f"SKU-{n}", name=name or f"Product {n}")
        db.session.add(product)
        db.session.commit()
        return product

    def entitlement(
        self,
        owner: Organization,
        sold_via: Sequence[Organization] = (),
        *,
        seats: int = 10,
        model: str = "perpetual",
        fulfilment: str = "drop_ship",
        product: Product | None = None,
        start: date | None = None,
        end: date | None = None,
    ):
        product = product or self.product()
        today = date.today()
        if model == "subscription":
            spec = LineSpec(product, "subscription", seats, start_date=start or today - timedelta(days=10),
                            end_date=end or today + timedelta(days=355))
        elif model == "usage":
            spec = LineSpec(product, "usage", seats, start_date=start, usage_period="month")
        else:
            spec = LineSpec(product, "perpetual", seats, start_date=start,
                            maintenance_end=end or today + timedelta(days=365))
        entitlement = create_entitlement(self.system, owner=owner, lines=[spec], sales_chain=list(sold_via),
                                         fulfilment=fulfilment)
        db.session.commit()
        return entitlement

    def attach(self, entitlements, partner: Organization, relation: str = "services",
               permissions=("view",)):
        if not isinstance(entitlements, list | tuple):
            entitlements = [entitlements]
        result = attach_partner(self.system, list(entitlements), partner, relation=relation,
                                permissions=permissions)
        db.session.commit()
        return result


    def message(self, org: Organization, title: str = "Service pack 1 is out", kind: str = "service_pack",
                content: list | None = None, product: Product | None = None, body: str = "Install it soon."):
        """A producer notice in ``org``'s inbox (rows as a notification send would leave them)."""
        notification = Notification(kind=kind, title=title, body=body, product=product or self.product())
        message = NotificationMessage(notification=notification, org=org, content=content or [])
        db.session.add_all([notification, message])
        db.session.commit()
        return message


def write_transaction() -> None:
    """Begin a write transaction (SQLite: BEGIN IMMEDIATE) for seat-changing services."""
    db.session.commit()
    begin_write()


_CSRF_TOKEN = re.compile(r'("X-CSRFToken": "|name="csrf_token" value=")[^"]*')


def page_without_csrf(response) -> str:
    """A response's body (or a page's text) without its CSRF token, which is signed with the time
    of the request: two answers a second apart differ there and nowhere else."""
    text = response if isinstance(response, str) else response.get_data(as_text=True)
    return _CSRF_TOKEN.sub(r"\1", text)
