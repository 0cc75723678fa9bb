"""``flask portal seed``: a deterministic synthetic data set at a chosen scale.

The data set has the shape of a real installation, so lists, reports, scoping and the
export can be tried at 200,000 entitlements:

- the producer (reused when the database has one already, created otherwise);
- partners split into distributors (~10%), resellers (~70%, some of them stocking) and
  service providers (~20%), with channel edges producer -> distributors, distributors ->
  resellers (many-to-many) and producer -> resellers (single tier; some resellers have both);
- customer hierarchies: ``customers`` top-level organizations, about half of them with
  subsidiaries, sites and the odd sub-site, with correct materialized paths;
- a few products of each license model, with releases;
- entitlements with one to three lines; sales chains follow the channel edges (two tiers,
  single tier, distributor-sold and direct); each customer group buys from several sellers
  and uses a few service providers; sold/distributed attachments exactly as
  ``services.entitlements.create_entitlement`` makes them, plus ``services`` attachments
  (some revoked); stock held by stocking resellers, part of it already assigned;
- activations within each line's seats (a unique host per line) and some usage records;
- one admin user per organization (all with the password ``SEED_PASSWORD``);
- a niche product (``NICHE_PRODUCT``), added as an extra line to about ``NICHE_SHARE`` of the
  usable customer entitlements (drawn from an RNG of its own, after everything else, so the rest
  of the data is what it was without it), always including one of the largest hierarchy's;
- one SENT security patch for that product (the product held by the fewest customers), made
  after the bulk load through ``services.notifications`` as the worker makes it: composed and
  sent by producer staff, the job run to completion (``run_jobs``), so every affected customer
  organization has its message and its mail; the mail is then marked sent (one UPDATE), so
  that no undelivered mail is left in a seeded database.

Speed is the point: rows are written in chunks of ``CHUNK_ROWS`` with SQLAlchemy Core bulk
inserts (``session.execute(insert(table), rows)``; on PostgreSQL with ``COPY``, which loads
the 200,000-entitlement set in about 90 s where executemany needs over four minutes), with
ids assigned here (after the current maximum), bypassing the services and their per-row audit
events. That is acceptable only because the data is synthetic and generated consistent by
construction (``tests/test_seed.py`` checks the invariants the services would enforce); the
run as a whole is audited by one ``seed.run`` event (the notification by the services' own events
and one ``seed.notification_mail_sent`` for the mail marked sent). The read models that the ORM keeps for the
services (``partner_customer``, ``row_count``: see ``portal.models.entitlements``; ``partner_sales``
and ``partner_sales_end``: ``portal.models.sales``) are derived again from the tables at the end
of the run, since these rows never passed through the ORM.
``progress(stage, done, total)``, when given, hears how far the run is (``make bench`` shows it).

The bulk load happens in ONE transaction, committed at the end: a seed run is all or nothing,
so a failure (a constraint, Ctrl-C) never leaves half a data set behind, and the id ranges
chosen at the start stay valid because writers are kept out for the whole run (SQLite: the
``BEGIN IMMEDIATE`` write lock; PostgreSQL: ``LOCK TABLE ... IN EXCLUSIVE MODE``, readers
still read). Neither database minds a transaction of a million rows or two. The notification
comes after that commit, in the services' own transactions (the job commits a batch at a time, as
the worker does); should it fail, the data is there without it and the error is raised
(``make bench`` then seeds again, since it writes its fingerprint only after a seed succeeded).

Same seed, same starting database, same data: every choice comes from ``random.Random``
(no ``secrets``, no clock) and dates are relative to ``today``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import Table, func, insert, select, text, update
from werkzeug.security import generate_password_hash

from portal.database import begin_write
from portal.extensions import db
from portal.models import (
    Activation,
    Attachment,
    ChannelRelationship,
    Entitlement,
    EntitlementLine,
    Membership,
    Organization,
    Product,
    Release,
    SalesChainLink,
    UsageRecord,
    User,
)
from portal.models.channel import CHANNEL_TABLES, rebuild_channel_sales
from portal.models.entitlements import PartnerCustomer, RowCount, rebuild_partner_customers, rebuild_row_counts
from portal.models.notifications import Notification, NotificationMessage, OutboxEmail
from portal.models.orgs import path_below
from portal.models.sales import PartnerSale, PartnerSaleEnd, rebuild_sales
from portal.policy import Actor, system_actor
from portal.services import notifications as notices
from portal.services.audit import record
from portal.services.codes import ALPHABET
from portal.services.orgs import bootstrap_producer

SEED_PASSWORD = "seed-password-2026"  # noqa: S105  (synthetic users only, documented on purpose)
CHUNK_ROWS = 10_000  # rows buffered (all tables together) before they are written
# PostgreSQL loads the chunks with COPY (see the module docstring); False uses Core inserts there too.
POSTGRES_COPY = True

# Insert order: every foreign key points to a table earlier in this list.
TABLES: list[tuple[str, Table]] = [
    ("organizations", Organization.__table__),
    ("channel_relationships", ChannelRelationship.__table__),
    ("users", User.__table__),
    ("memberships", Membership.__table__),
    ("products", Product.__table__),
    ("releases", Release.__table__),
    ("entitlements", Entitlement.__table__),
    ("lines", EntitlementLine.__table__),
    ("sales_chain_links", SalesChainLink.__table__),
    ("attachments", Attachment.__table__),
    ("activations", Activation.__table__),
    ("usage_records", UsageRecord.__table__),
]

# Derived from the tables above at the end of a run (they are kept by ORM hooks otherwise).
READ_MODELS = [PartnerCustomer.__tablename__, RowCount.__tablename__, *CHANNEL_TABLES, PartnerSale.__tablename__,
               PartnerSaleEnd.__tablename__]

# (sku, name, license model, description)
PRODUCTS = [
    ("SEED-STUDIO", "Acme Studio", "perpetual", "Desktop design studio, perpetual with maintenance."),
    ("SEED-CAD", "Acme CAD Pro", "perpetual", "Precision CAD, perpetual licenses with maintenance."),
    ("SEED-SYNC", "Acme Cloud Sync", "subscription", "File synchronization, by subscription."),
    ("SEED-VAULT", "Acme Vault", "subscription", "Backup and archive, by subscription."),
    ("SEED-RENDER", "Acme Render Credits", "usage", "Cloud rendering, pay per use."),
    ("SEED-API", "Acme API Calls", "usage", "Metered API access, pay per use."),
]
# Held by few customers (an extra line on about NICHE_SHARE of the usable entitlements): the
# product of the seeded security patch, whose fan-out stays small (at 20k entitlements it reaches
# 379 of 5,638 customer organizations, in 0.3 s; the least held of the products above 3,040).
NICHE_PRODUCT = ("SEED-EDGE", "Acme Edge Gateway", "perpetual", "On-site gateway for air-gapped plants, perpetual.")
NICHE_SHARE = 0.02
NOTIFICATION_TITLE = "Acme Edge Gateway 2.0.1: install the security patch"
NOTIFICATION_BODY = """A vulnerability in the gateway's **update service** lets a host on the same network
run commands on the gateway (CVSS 8.1).

1. Download *2.0.1* from the portal (Downloads of your entitlement).
2. Install it on every gateway; the service restarts by itself.
3. Confirm below that it is installed.

Until then, block port 8443 to the gateway from anything but your admin network."""

# (version, days before today, kind)
RELEASES = [
    ("1.0", 900, "release"),
    ("1.1", 600, "service_pack"),
    ("2.0", 300, "release"),
    ("2.0.1", 200, "security_patch"),
    ("2.1", 90, "service_pack"),
    ("2.1.1", 20, "hotfix"),
]

_PREFIXES = ["North", "Blue", "Red", "Silver", "Bright", "Iron", "Green", "Summit", "Harbor", "Pioneer",
             "Atlas", "Cedar", "Falcon", "Granite", "Horizon", "Maple", "Nova", "Orbit", "Quartz", "Vertex"]
_STEMS = ["wind", "sky", "rock", "line", "field", "stone", "bridge", "wave", "point", "gate",
          "brook", "crest", "forge", "light", "path", "ridge", "star", "vale", "works", "peak"]
_SUFFIX = {
    "distributor": "Distribution",
    "reseller": "IT",
    "service_provider": "Services",
    "customer": "Group",
}
_SITES = ["Plant", "Office", "Campus", "Lab", "Warehouse", "Studio", "Depot", "Center"]
_CITIES = ["Munich", "Lyon", "Austin", "Osaka", "Leeds", "Turin", "Denver", "Porto", "Graz", "Malmo",
           "Ghent", "Bergen", "Tampa", "Kyoto", "Cork", "Basel", "Quebec", "Perth", "Dublin", "Seville"]
_COUNTRIES = ["Germany", "France", "USA", "Japan", "UK", "Italy", "Spain", "Canada", "Austria", "Sweden"]


# ``progress(stage, done, total)``: called as the run goes ("customers", "entitlements", "finishing").
Progress = Callable[[str, int, int], None]


def seed(
    *, customers: int, partners: int, entitlements: int, random_seed: int = 1, today: date | None = None,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Generate and commit a synthetic data set; returns the rows written per table."""
    if min(customers, partners, entitlements) < 0:
        raise ValueError("customers, partners and entitlements cannot be negative")
    if entitlements and not customers:
        raise ValueError("entitlements need at least one customer")
    begin_write()
    try:
        _keep_writers_out()
        generator = _Generator(random_seed, today or date.today(), progress)
        counts = generator.run(customers=customers, partners=partners, entitlements=entitlements)
        generator.report("finishing", 0, 1)
        # The rows went in without the ORM, so the read models are derived again from them.
        rebuild_partner_customers(db.session.connection())
        rebuild_row_counts(db.session.connection())
        rebuild_channel_sales(db.session.connection())
        rebuild_sales(db.session.connection())
        _after_bulk_load()
        record(system_actor(generator.producer), "seed.run", generator.producer,
               subject_org=generator.producer, details={
                   "random_seed": random_seed, "customers": customers, "partners": partners,
                   "entitlements": entitlements, "today": generator.today.isoformat(), "rows": counts,
               })
        db.session.commit()
    except BaseException:
        db.session.rollback()  # all or nothing, also on Ctrl-C
        raise
    if generator.niche_lines:
        try:
            send_security_patch(generator.producer, generator.niche_product_id)
        except BaseException:
            db.session.rollback()
            raise
    generator.report("finishing", 1, 1)
    return counts


def send_security_patch(producer: Organization, product_id: int) -> Notification:
    """One sent security patch for a product, through the services: composed and sent by
    producer staff, the job run to completion in-process (``run_jobs``, what ``flask portal
    worker`` runs), then its queued mail marked sent, as if a worker had delivered it."""
    staff = db.session.scalar(
        select(User).join(Membership, Membership.user_id == User.id)
        .where(Membership.org_id == producer.id, Membership.role == "staff").order_by(User.id).limit(1))
    actor = Actor(user=staff, org=producer, role="staff")
    product = db.session.get(Product, product_id)
    release = db.session.scalar(select(Release).where(Release.product_id == product_id,
                                                      Release.kind == "security_patch")
                                .order_by(Release.released_on.desc()).limit(1))
    begin_write()
    notification = notices.compose(actor, kind="security_patch", title=NOTIFICATION_TITLE, body=NOTIFICATION_BODY,
                                   product=product, release=release)
    notices.send(actor, notification)
    db.session.commit()
    notification_id = notification.id
    notices.run_jobs()
    begin_write()
    notification = db.session.get(Notification, notification_id)
    if notification.state != "sent":
        raise RuntimeError(f"the seeded notification ended {notification.state}: {notification.stop_reason}")
    marked = db.session.execute(
        update(OutboxEmail).where(OutboxEmail.notification_id == notification_id, OutboxEmail.status == "queued")
        .values(status="sent", sent_at=notification.sent_at, attempts=1)
    ).rowcount
    messages = db.session.scalar(select(func.count()).select_from(NotificationMessage)
                                 .where(NotificationMessage.notification_id == notification_id))
    record(system_actor(producer), "seed.notification_mail_sent", notification, subject_org=producer,
           details={"messages": messages, "emails": marked})
    db.session.commit()
    return notification


def _keep_writers_out() -> None:
    """PostgreSQL: block other writers (not readers), so the id ranges chosen here stay free."""
    if db.session.connection().dialect.name == "postgresql":
        names = ", ".join([*(table.name for _, table in TABLES), *READ_MODELS])
        db.session.execute(text(f"LOCK TABLE {names} IN EXCLUSIVE MODE"))


def _after_bulk_load() -> None:
    """Move PostgreSQL's id sequences past the ids given here, and refresh planner statistics.

    SQLite gathers none by itself: without them it read every line of a product for each
    entitlement when the seed sent its notification (over 9 minutes at 200k)."""
    connection = db.session.connection()
    if connection.dialect.name != "postgresql":
        db.session.execute(text("ANALYZE"))
        return
    for _, table in TABLES:
        if "id" not in table.c:
            continue
        db.session.execute(text(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "  # noqa: S608  (own table names)
            f"(SELECT COALESCE(MAX(id), 0) + 1 FROM {table.name}), false)"
        ))
    for name in [*(table.name for _, table in TABLES), *READ_MODELS]:
        db.session.execute(text(f"ANALYZE {name}"))


def _code(rng: random.Random, prefix: str, groups: int) -> str:
    """``PREFIX-XXXX-XXXX-...`` from the RNG: 20 bits per group of four characters."""
    bits = rng.getrandbits(20 * groups)
    chars = []
    for _ in range(4 * groups):
        chars.append(ALPHABET[bits & 31])
        bits >>= 5
    body = "".join(chars)
    return "-".join([prefix, *(body[i:i + 4] for i in range(0, len(body), 4))])


class _BulkWriter:
    """Buffers rows per table and writes them, parents first: Core executemany, or COPY."""

    def __init__(self, use_copy: bool = True) -> None:
        self.tables = dict(TABLES)
        self.buffers: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in TABLES}
        self.counts: dict[str, int] = {name: 0 for name, _ in TABLES}
        self.next_ids: dict[str, int] = {}
        self.buffered = 0
        self.use_copy = use_copy and db.session.connection().dialect.name == "postgresql"
        for name, table in TABLES:
            if "id" in table.c:
                self.next_ids[name] = (db.session.scalar(select(func.max(table.c.id))) or 0) + 1

    def new_id(self, name: str) -> int:
        value = self.next_ids[name]
        self.next_ids[name] = value + 1
        return value

    def add(self, name: str, row: dict[str, Any]) -> None:
        self.buffers[name].append(row)
        self.buffered += 1

    def maybe_flush(self) -> bool:
        """Write the buffered rows when there are enough of them; True when it did."""
        if self.buffered >= CHUNK_ROWS:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        for name, rows in self.buffers.items():
            if rows:
                if self.use_copy:
                    self._copy(self.tables[name], rows)
                else:
                    db.session.execute(insert(self.tables[name]), rows)
                self.counts[name] += len(rows)
                rows.clear()
        self.buffered = 0

    @staticmethod
    def _copy(table: Table, rows: list[dict[str, Any]]) -> None:
        """PostgreSQL: ``COPY ... FROM STDIN`` on the session's own connection and transaction.

        The values are already what the columns hold (aware UTC datetimes, dates, booleans),
        so psycopg adapts them as an INSERT would; no SQLAlchemy type needs to process them.
        """
        columns = list(rows[0])
        raw = db.session.connection().connection.driver_connection
        names = ", ".join(columns)
        with raw.cursor() as cursor, cursor.copy(f"COPY {table.name} ({names}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([row[column] for column in columns])


class _Generator:
    def __init__(self, random_seed: int, today: date, progress: Progress | None = None) -> None:
        self.progress = progress
        self.rng = random.Random(random_seed)
        self.random_seed = random_seed
        self.today = today
        self.writer = _BulkWriter(use_copy=POSTGRES_COPY)
        self.extra = {name: 0 for name, _ in TABLES}  # rows written through the ORM
        self.password_hash = generate_password_hash(SEED_PASSWORD, method="scrypt")
        self.admin_user: dict[int, int] = {}  # org id -> its seeded admin user id
        self.names_used: dict[tuple[str, str], int] = {}
        self.producer: Organization
        # Entitlements a customer can use: (entitlement id, purchase date, owner's group index, owner id).
        self.usable: list[tuple[int, date, int, int]] = []
        self.group_sizes: list[int] = []  # organizations per customer group
        self.group_entitlements: list[int] = []  # entitlements owned within each customer group
        self.group_subsidiaries: list[list[int]] = []  # the top-level organization's children
        self.subsidiary_of: dict[int, int] = {}  # organization below a top level -> that child
        self.subsidiary_entitlements: dict[int, int] = {}  # entitlements owned in a child's subtree
        self.niche_lines = 0

    # --- helpers ------------------------------------------------------------------------

    def report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress(stage, done, total)

    def at(self, day: date, hour: int = 9) -> datetime:
        return datetime.combine(day, time(hour), tzinfo=UTC) + timedelta(minutes=self.rng.randrange(480))

    def days_ago(self, low: int, high: int) -> date:
        return self.today - timedelta(days=self.rng.randint(low, high))

    def company(self, kind: str) -> tuple[str, str]:
        """(base, name): 'Cedarridge', 'Cedarridge Group'; a repeated name gets a number."""
        base = f"{self.rng.choice(_PREFIXES)}{self.rng.choice(_STEMS)}"
        key = (kind, base)
        self.names_used[key] = number = self.names_used.get(key, 0) + 1
        if number > 1:
            base = f"{base} {number}"
        return base, f"{base} {_SUFFIX[kind]}"

    def org(self, kind: str, name: str, parent: tuple[int, str] | None = None, *, stocking: bool = False,
            with_contacts: bool = True) -> tuple[int, str]:
        """Buffer one organization and its admin user; returns (id, path)."""
        org_id = self.writer.new_id("organizations")
        path = path_below(parent[1] if parent else None, org_id)
        domain = f"org{org_id}.seed.example"
        self.writer.add("organizations", {
            "id": org_id, "kind": kind, "name": name, "status": "active",
            "email": f"contact@{domain}" if with_contacts else None,
            "phone": f"+1 555 {org_id % 10000:04d}" if with_contacts else None,
            "website": f"https://{domain}" if with_contacts and kind != "customer" else None,
            "address": None,
            "notification_emails": f"it@{domain}" if with_contacts and kind == "customer" else None,
            "stocking": stocking, "parent_id": parent[0] if parent else None, "path": path,
            "created_at": self.at(self.days_ago(1100, 1500)),
        })
        self.user(org_id, f"admin{org_id}@seed.example", f"Admin of {name}", "admin")
        return org_id, path

    def user(self, org_id: int, email: str, display_name: str, role: str) -> int:
        user_id = self.writer.new_id("users")
        created = self.at(self.days_ago(1000, 1100))
        self.writer.add("users", {
            "id": user_id, "email": email, "display_name": display_name, "password_hash": self.password_hash,
            "active": True, "session_version": 1, "created_at": created,
        })
        self.writer.add("memberships", {
            "id": self.writer.new_id("memberships"), "user_id": user_id, "org_id": org_id, "role": role,
            "created_at": created,
        })
        self.admin_user.setdefault(org_id, user_id)
        return user_id

    def edge(self, supplier_id: int, buyer_id: int) -> None:
        self.writer.add("channel_relationships", {
            "id": self.writer.new_id("channel_relationships"),
            "supplier_id": supplier_id, "buyer_id": buyer_id,
            "created_at": self.at(self.days_ago(1100, 1200)),
        })

    # --- the run ------------------------------------------------------------------------

    def run(self, *, customers: int, partners: int, entitlements: int) -> dict[str, int]:
        self.make_producer()
        self.make_partners(partners)
        self.make_customers(customers)
        self.make_products()
        self.writer.flush()
        self.make_entitlements(entitlements)
        self.make_niche_lines()
        self.writer.flush()
        return {name: self.writer.counts[name] + self.extra[name] for name, _ in TABLES}

    def make_producer(self) -> None:
        producer = db.session.scalar(select(Organization).where(Organization.kind == "producer"))
        if producer is None:
            producer = bootstrap_producer("Acme Software", email="channel@acme.example",
                                          website="https://acme.example")
            producer.created_at = self.at(self.today - timedelta(days=1500))
            self.extra["organizations"] += 1
            # Its users go through the writer; their ids come after the current maximum.
            self.user(producer.id, f"admin{producer.id}@seed.example", "Acme Admin", "admin")
            self.user(producer.id, f"staff{producer.id}@seed.example", "Acme Staff", "staff")
        self.producer = producer
        # The producer's own id is below the writer's range (it existed or was flushed before).
        if self.writer.next_ids["organizations"] <= producer.id:
            self.writer.next_ids["organizations"] = producer.id + 1

    def make_partners(self, count: int) -> None:
        rng = self.rng
        n_dist = max(1, round(count * 0.1)) if count >= 2 else 0
        n_sp = max(1, round(count * 0.2)) if count >= 3 else 0
        n_res = count - n_dist - n_sp
        producer_id = self.producer.id
        self.distributors = [self.org("distributor", self.company("distributor")[1])[0] for _ in range(n_dist)]
        for distributor in self.distributors:
            self.edge(producer_id, distributor)
        self.resellers: list[int] = []
        self.stocking: set[int] = set()
        # Seller -> the chains (top tier first) through which it can sell.
        self.routes: dict[int, list[tuple[int, ...]]] = {d: [(d,)] for d in self.distributors}
        for index in range(n_res):
            stocking = rng.random() < 0.2 or (index == n_res - 1 and not self.stocking)
            reseller = self.org("reseller", self.company("reseller")[1], stocking=stocking)[0]
            self.resellers.append(reseller)
            if stocking:
                self.stocking.add(reseller)
            suppliers: list[int] = []
            if self.distributors and rng.random() < 0.85:
                k = min(len(self.distributors), rng.choices((1, 2, 3), weights=(60, 30, 10))[0])
                suppliers = rng.sample(self.distributors, k)
            direct = not suppliers or rng.random() < 0.3
            routes = [(d, reseller) for d in suppliers]
            if direct:
                self.edge(producer_id, reseller)
                routes.append((reseller,))
            for distributor in suppliers:
                self.edge(distributor, reseller)
            self.routes[reseller] = routes
        self.service_providers = [self.org("service_provider", self.company("service_provider")[1])[0]
                                  for _ in range(n_sp)]
        # Some sellers are much bigger than others, as in a real channel.
        self.reseller_weights = [rng.paretovariate(1.2) for _ in self.resellers]

    def make_customers(self, count: int) -> None:
        """Top-level customers with subsidiaries, sites and sub-sites; each group gets its sellers."""
        rng = self.rng
        self.customer_orgs: list[tuple[int, int]] = []  # (org id, index of its group)
        self.groups: list[tuple[list[int], list[int]]] = []  # (sellers, service providers)
        for index in range(count):
            base, name = self.company("customer")
            top = self.org("customer", name)
            members = [top]
            subsidiaries: list[int] = []
            if rng.random() < 0.5:
                for country in rng.sample(_COUNTRIES, rng.randint(1, 3)):
                    sub = self.org("customer", f"{base} {country}", top)
                    members.append(sub)
                    subsidiaries.append(sub[0])
                    self.subsidiary_of[sub[0]] = sub[0]
                    self.subsidiary_entitlements[sub[0]] = 0
                    for _ in range(rng.choice((0, 0, 1, 2))):
                        site_name = f"{base} {rng.choice(_CITIES)} {rng.choice(_SITES)}"
                        site = self.org("customer", site_name, sub, with_contacts=False)
                        members.append(site)
                        self.subsidiary_of[site[0]] = sub[0]
                        if rng.random() < 0.15:
                            annex = self.org("customer", f"{site_name} Annex", site, with_contacts=False)
                            members.append(annex)
                            self.subsidiary_of[annex[0]] = sub[0]
            self.customer_orgs.extend((org_id, index) for org_id, _ in members)
            self.group_sizes.append(len(members))
            self.group_entitlements.append(0)
            self.group_subsidiaries.append(subsidiaries)
            self.groups.append((self.pick_sellers(), self.pick_service_providers()))
            if self.writer.maybe_flush():
                self.report("customers", index + 1, count)
        self.report("customers", count, count)

    def pick_sellers(self) -> list[int]:
        """Bottom-up: a customer group buys from several sellers, not one."""
        rng = self.rng
        sellers: list[int] = []
        if self.resellers:
            k = min(len(self.resellers), rng.choices((1, 2, 3, 4), weights=(35, 35, 20, 10))[0])
            while len(sellers) < k:
                candidate = rng.choices(self.resellers, weights=self.reseller_weights)[0]
                if candidate not in sellers:
                    sellers.append(candidate)
        if self.distributors and (not sellers or rng.random() < 0.1):
            sellers.append(rng.choice(self.distributors))
        return sellers

    def pick_service_providers(self) -> list[int]:
        if not self.service_providers or self.rng.random() < 0.6:
            return []
        k = min(len(self.service_providers), self.rng.choice((1, 1, 2)))
        return self.rng.sample(self.service_providers, k)

    def make_products(self) -> None:
        existing = dict(db.session.execute(
            select(Product.sku, Product.id).where(Product.sku.in_([p[0] for p in [*PRODUCTS, NICHE_PRODUCT]]))
        ).all())
        self.products: list[tuple[int, str]] = []  # (id, license model); the niche one apart
        for sku, name, model, description in [*PRODUCTS, NICHE_PRODUCT]:
            product_id = existing.get(sku)
            if product_id is None:
                product_id = self.writer.new_id("products")
                self.writer.add("products", {"id": product_id, "name": name, "sku": sku,
                                             "description": description})
                for version, age, kind in RELEASES:
                    self.writer.add("releases", {
                        "id": self.writer.new_id("releases"), "product_id": product_id, "version": version,
                        "released_on": self.today - timedelta(days=age), "kind": kind,
                        "notes": f"{name} {version}: {kind.replace('_', ' ')}.",
                    })
            if sku == NICHE_PRODUCT[0]:
                self.niche_product_id = product_id
            else:
                self.products.append((product_id, model))

    # --- entitlements -------------------------------------------------------------------

    def make_entitlements(self, count: int) -> None:
        writer = self.writer
        first_id = writer.next_ids["entitlements"]
        # A second run on the same database draws other codes; the sets rule out any repeat.
        self.code_rng = random.Random(f"codes:{self.random_seed}:{first_id}:{writer.next_ids['lines']}")
        self.taken_codes: set[str] = set()
        if first_id > 1:
            self.taken_codes.update(db.session.scalars(select(Entitlement.code)))
        if writer.next_ids["lines"] > 1:
            self.taken_codes.update(db.session.scalars(select(EntitlementLine.activation_code)))
        for index in range(count):
            self.make_entitlement()
            if writer.maybe_flush():
                self.report("entitlements", index + 1, count)
        self.report("entitlements", count, count)

    def unique_code(self, prefix: str, groups: int) -> str:
        while True:
            code = _code(self.code_rng, prefix, groups)
            if code not in self.taken_codes:
                self.taken_codes.add(code)
                return code

    def make_entitlement(self) -> None:
        rng, writer = self.rng, self.writer
        owner_id, group = rng.choice(self.customer_orgs)
        sellers, service_providers = self.groups[group]
        chain: tuple[int, ...] = ()
        if sellers and rng.random() >= 0.08:
            seller = rng.choice(sellers)
            chain = rng.choice(self.routes[seller])
        fulfilment, in_stock = "drop_ship", False
        if chain and chain[-1] in self.stocking and rng.random() < 0.35:
            # Bought into the reseller's stock; half of it is assigned to the customer since.
            fulfilment = "stocking"
            in_stock = rng.random() < 0.5
            if in_stock:
                owner_id = chain[-1]
        status = rng.choices(("active", "suspended", "returned"), weights=(96, 3, 1))[0]
        purchased = self.days_ago(0, 1095)
        granted_at = self.at(purchased)
        entitlement_id = writer.new_id("entitlements")
        writer.add("entitlements", {
            "id": entitlement_id, "code": self.unique_code("ENT", 3), "owner_id": owner_id,
            "fulfilment": fulfilment,
            "order_ref": f"PO-{rng.randint(10000, 99999)}" if rng.random() < 0.9 else None,
            "purchase_date": purchased, "status": status, "notes": None, "created_at": granted_at,
        })
        for position, partner_id in enumerate(chain):
            writer.add("sales_chain_links", {"entitlement_id": entitlement_id, "position": position,
                                             "partner_id": partner_id})
            seller = position == len(chain) - 1
            self.attachment(entitlement_id, partner_id, "sold" if seller else "distributed",
                            (True, seller, seller), granted_at)
        if service_providers and not in_stock and rng.random() < 0.3:
            permissions = rng.choice(((True, False, False), (True, True, False), (True, True, True)))
            revoked = self.at(purchased + timedelta(days=rng.randint(1, 200))) if rng.random() < 0.1 else None
            self.attachment(entitlement_id, rng.choice(service_providers), "services", permissions,
                            granted_at + timedelta(days=rng.randint(0, 30)), revoked)
        usable = status == "active" and not in_stock
        if not in_stock:
            self.group_entitlements[group] += 1
            if owner_id in self.subsidiary_of:
                self.subsidiary_entitlements[self.subsidiary_of[owner_id]] += 1
            if usable:
                self.usable.append((entitlement_id, purchased, group, owner_id))
        activator = chain[-1] if chain else None
        for _ in range(rng.choices((1, 2, 3), weights=(60, 30, 10))[0]):
            self.line(entitlement_id, purchased, owner_id if usable else None, activator)

    def make_niche_lines(self) -> None:
        """The niche product on about NICHE_SHARE of the usable entitlements, from an RNG of its own;
        one of them in the largest customer hierarchy (most organizations, then most entitlements,
        then the first), below its subsidiary with the most entitlements: the bench's customer
        admin and customer member (``bench/actors.py``) both have a message in their inbox."""
        if not self.usable:
            return
        rng = random.Random(f"niche:{self.random_seed}")
        chosen = [item for item in self.usable if rng.random() < NICHE_SHARE]
        largest = max(range(len(self.group_sizes)),
                      key=lambda g: (self.group_sizes[g], self.group_entitlements[g], -g))
        subsidiary = max(self.group_subsidiaries[largest], default=None,
                         key=lambda sub: (self.subsidiary_entitlements[sub], -sub))

        def told(item: tuple[int, date, int, int]) -> bool:  # a message the bench's actors see
            return item[2] == largest and (subsidiary is None or self.subsidiary_of.get(item[3]) == subsidiary)

        if not any(told(item) for item in chosen):
            chosen += [item for item in self.usable if told(item)][:1] or \
                [item for item in self.usable if item[2] == largest][:1]
        for entitlement_id, purchased, _, _ in sorted(chosen):
            self.writer.add("lines", {
                "id": self.writer.new_id("lines"), "entitlement_id": entitlement_id,
                "product_id": self.niche_product_id, "license_model": "perpetual",
                "quantity": rng.choice((1, 2, 4, 8)), "start_date": purchased, "end_date": None,
                "maintenance_end": purchased + timedelta(days=365 * rng.randint(1, 3)),
                "usage_period": None, "activation_code": self.unique_code("ACT", 4),
            })
        self.niche_lines = len(chosen)

    def attachment(self, entitlement_id: int, partner_id: int, relation: str, permissions: tuple[bool, ...],
                   granted_at: datetime, revoked_at: datetime | None = None) -> None:
        view, download, activate = permissions
        self.writer.add("attachments", {
            "id": self.writer.new_id("attachments"),
            "entitlement_id": entitlement_id, "partner_id": partner_id,
            "relation": relation, "can_view": view, "can_download": download, "can_activate": activate,
            "active": revoked_at is None, "granted_by_id": None, "granted_at": granted_at,
            "revoked_by_id": None, "revoked_at": revoked_at,
        })

    def line(self, entitlement_id: int, purchased: date, user_org: int | None, seller: int | None) -> None:
        rng = self.rng
        product_id, model = rng.choice(self.products)
        line_id = self.writer.new_id("lines")
        end = maintenance_end = period = None
        if model == "perpetual":
            quantity = rng.choice((1, 2, 3, 5, 10, 10, 25, 50, 100, 250))
            maintenance_end = purchased + timedelta(days=365 * rng.randint(1, 3))
        elif model == "subscription":
            quantity = rng.choice((5, 10, 20, 50, 100, 500))
            end = purchased + timedelta(days=365 * rng.choice((1, 1, 2, 3)) - 1)
        else:
            quantity = rng.choice((1000, 5000, 10000, 50000))
            period = rng.choice(("month", "year"))
        self.writer.add("lines", {
            "id": line_id, "entitlement_id": entitlement_id, "product_id": product_id,
            "license_model": model, "quantity": quantity,
            "start_date": purchased, "end_date": end, "maintenance_end": maintenance_end,
            "usage_period": period, "activation_code": self.unique_code("ACT", 4),
        })
        if user_org is None:
            return
        if model == "usage":
            if rng.random() < 0.4:
                self.usage(line_id, purchased, quantity, user_org)
        elif rng.random() < 0.35:
            self.activations(line_id, purchased, end, quantity, user_org, seller)

    def activations(self, line_id: int, start: date, end: date | None, quantity: int, owner_id: int,
                    seller: int | None) -> None:
        """Seats within the quantity, one live activation per host, some returned ones."""
        rng = self.rng
        last_day = min(self.today, end or self.today)
        hosts = min(quantity, rng.randint(1, 4))
        per_host = quantity // hosts
        for number in range(hosts + (rng.random() < 0.1)):
            returned = number == hosts  # an extra, already returned activation
            acting_org = seller if seller is not None and rng.random() < 0.2 else owner_id
            day = start + timedelta(days=rng.randint(0, max(0, min(30, (last_day - start).days))))
            activated_at = self.at(day)
            self.writer.add("activations", {
                "id": self.writer.new_id("activations"), "line_id": line_id,
                "host_id": f"host-{line_id}-{number + 1}",
                "friendly_name": f"Workstation {number + 1}" if rng.random() < 0.5 else None,
                "seats": 1 if returned else rng.randint(1, per_host), "active": not returned,
                "activated_at": activated_at, "activated_by_id": self.admin_user.get(acting_org),
                "activated_by_org_id": acting_org,
                "returned_at": activated_at + timedelta(days=rng.randint(1, 20)) if returned else None,
                "returned_by_id": self.admin_user.get(owner_id) if returned else None, "certificate": None,
            })

    def usage(self, line_id: int, start: date, quantity: int, owner_id: int) -> None:
        rng = self.rng
        span = max(0, (self.today - start).days)
        for _ in range(rng.randint(1, 3)):
            used_on = start + timedelta(days=rng.randint(max(0, span - 60), span))
            self.writer.add("usage_records", {
                "id": self.writer.new_id("usage_records"), "line_id": line_id,
                "units": rng.randint(1, quantity // 10), "used_on": used_on, "note": None,
                "recorded_by_id": self.admin_user.get(owner_id), "recorded_at": self.at(used_on, 18),
            })
