"""The channel's read model (``portal.models.channel``) stays equal to what the tables say after
every kind of change, made through the services as the pages make them; and the report's page,
read from it, shows exactly what the report computed from the tables shows."""

from __future__ import annotations

import random
from collections import defaultdict
from datetime import date, timedelta

import pytest
from sqlalchemy import func, select, true

from portal.blueprints.producer.reports import PAGE, build_report, build_summary
from portal.extensions import db
from portal.models import Activation, Entitlement, EntitlementLine, Organization
from portal.models.channel import (
    ChannelCustomer,
    ChannelEnding,
    ChannelMonth,
    TierMonth,
    contribution,
    facts,
    rebuild_channel_sales,
)
from portal.services.activations import activate, rehost, return_activation
from portal.services.entitlements import (
    LineSpec,
    assign_stock,
    correct_entitlement,
    create_entitlement,
    set_entitlement_status,
    transfer_entitlement,
)
from portal.services.errors import ServiceError
from portal.services.imports import commit_orders, validate_orders
from tests.factories import write_transaction
from tests.producer.channel_world import TODAY, build_channel

TABLES = (ChannelMonth, TierMonth, ChannelCustomer, ChannelEnding)


def stored() -> dict[str, list[tuple]]:
    return {m.__tablename__: sorted(tuple(r) for r in db.session.execute(select(*m.__table__.c))) for m in TABLES}


def derived() -> dict[str, list[tuple]]:
    """The read model as the entitlements, chains, lines and activations say it should be."""
    made = contribution(facts(db.session.connection(), where=true()).values())
    months: dict = defaultdict(lambda: [0, 0, 0])
    for (partner_id, month, column), n in made.months.items():
        months[(partner_id, month)][("entitlements", "seats", "activated").index(column)] += n
    tiers: dict = defaultdict(lambda: [0, 0])
    for (tier, month, column), n in made.tiers.items():
        tiers[(tier, month)][("entitlements", "seats").index(column)] += n
    return {
        "channel_month": sorted((*k, *v) for k, v in months.items() if v[0]),
        "tier_month": sorted((*k, *v) for k, v in tiers.items() if v[0]),
        "channel_customer": sorted((*k, n, made.last[k]) for k, n in made.customers.items() if n),
        "channel_ending": sorted((*k, n) for k, n in made.ending.items() if n),
    }


def same_report(**options) -> None:
    """Every row's totals in order, each page's customers served and the chart: equal."""
    live = build_report(**options)
    pages = max((len(live.rows) + PAGE - 1) // PAGE, 1)
    for page in range(1, pages + 1):
        summary = build_summary(**options, page=page)
        assert [(r.key, r.label) for r in summary.rows] == [(r.key, r.label) for r in live.rows], options
        for mine, truth in zip(summary.rows, live.rows, strict=True):
            shown = (page - 1) * PAGE <= live.rows.index(truth) < page * PAGE
            if not shown:
                mine.totals.customers = truth.totals.customers  # counted for the page's rows only
            assert mine.totals == truth.totals, (options, page, truth.key)
        assert summary.totals_by_period == live.totals_by_period, options
        assert summary.periods == live.periods


def check() -> None:
    db.session.flush()
    assert stored() == derived()


class Story:
    """Random changes through the services on the small channel (two tiers, stock, decoys)."""

    def __init__(self, make, rng: random.Random):
        self.make, self.rng = make, rng
        self.world = build_channel(make)
        o = self.world.orgs
        self.customers = [o["contoso"], o["germany"], o["fabrikam"], o["tailspin"]]
        self.chains = [[o["northwind"], o["bluesky"]], [o["redrock"]], [o["northwind"]], []]
        self.products = [make.product(), make.product()]

    def entitlements(self) -> list[Entitlement]:
        return list(db.session.scalars(select(Entitlement).order_by(Entitlement.id)))

    def new_order(self) -> None:
        rng = self.rng
        chain = rng.choice(self.chains)
        stocking = bool(chain) and chain[-1].stocking and rng.random() < 0.3
        owner = chain[-1] if stocking else rng.choice(self.customers)
        lines = []
        for _ in range(rng.randint(1, 3)):
            model = rng.choice(("perpetual", "subscription", "usage"))
            start = TODAY - timedelta(days=rng.randint(0, 300))
            if model == "subscription":
                lines.append(LineSpec(rng.choice(self.products), model, rng.randint(1, 20), start_date=start,
                                      end_date=TODAY + timedelta(days=rng.randint(-20, 200))))
            elif model == "usage":
                lines.append(LineSpec(rng.choice(self.products), model, 100, start_date=start, usage_period="month"))
            else:
                lines.append(LineSpec(rng.choice(self.products), model, rng.randint(1, 20),
                                      maintenance_end=TODAY + timedelta(days=300)))
        # Some bought in the future (dated after today), some before the report's window.
        purchased = TODAY + timedelta(days=rng.choice((rng.randint(-800, -300), rng.randint(-40, 0),
                                                       rng.randint(1, 40))))
        create_entitlement(self.make.system, owner=owner, lines=lines, sales_chain=chain,
                           fulfilment="stocking" if stocking else "drop_ship", purchase_date=purchased)

    def activate_seats(self) -> None:
        lines = list(db.session.scalars(select(EntitlementLine).join(Entitlement).join(Entitlement.owner).where(
            EntitlementLine.license_model != "usage", Entitlement.status == "active", Organization.kind == "customer")))
        line = self.rng.choice(lines)
        used = db.session.scalar(select(func.coalesce(func.sum(Activation.seats), 0))
                                 .where(Activation.line_id == line.id, Activation.active.is_(True)))
        if used < line.quantity and (line.end_date is None or line.end_date >= TODAY):
            write_transaction()
            activate(self.make.system, db.session.get(EntitlementLine, line.id), f"host-{self.rng.random()}",
                     seats=self.rng.randint(1, line.quantity - used))

    def active_activation(self) -> Activation | None:
        found = list(db.session.scalars(select(Activation).where(Activation.active.is_(True)).order_by(Activation.id)))
        return self.rng.choice(found) if found else None

    def return_seats(self) -> None:
        if (activation := self.active_activation()) is not None:
            write_transaction()
            return_activation(self.make.system, db.session.get(Activation, activation.id))

    def move_host(self) -> None:
        activation = self.active_activation()
        if activation is not None and activation.line.entitlement.status == "active":
            write_transaction()
            rehost(self.make.system, db.session.get(Activation, activation.id), f"moved-{self.rng.random()}")

    def status(self) -> None:
        entitlement = self.rng.choice(self.entitlements())
        set_entitlement_status(self.make.system, entitlement, self.rng.choice(("active", "suspended", "returned")))

    def correct(self) -> None:
        entitlement = self.rng.choice(self.entitlements())
        line = self.rng.choice(entitlement.lines)
        used = db.session.scalar(select(func.coalesce(func.sum(Activation.seats), 0))
                                 .where(Activation.line_id == line.id, Activation.active.is_(True)))
        wanted = {"quantity": max(used, 1) + self.rng.randint(0, 5)}
        if line.license_model == "subscription":
            wanted["end_date"] = max(line.start_date, TODAY + timedelta(days=self.rng.randint(-10, 120)))
        correct_entitlement(self.make.system, entitlement, order_ref=entitlement.order_ref, notes="corrected",
                            lines={line.id: wanted})

    def hand_out_stock(self) -> None:
        stock = [e for e in self.entitlements() if e.owner.kind != "customer"]
        if stock:
            assign_stock(self.make.system, self.rng.choice(stock), self.rng.choice(self.customers))

    def transfer(self) -> None:
        owned = [e for e in self.entitlements() if e.owner.kind == "customer"]
        entitlement = self.rng.choice(owned)
        recipient = self.rng.choice([c for c in self.customers if c.id != entitlement.owner_id])
        transfer_entitlement(self.make.system, entitlement, recipient)

    def import_orders(self) -> None:
        day = (TODAY - timedelta(days=self.rng.randint(0, 400))).isoformat()
        end = (TODAY + timedelta(days=self.rng.randint(1, 80))).isoformat()
        sku, ref = self.products[0].sku, f"IMP{self.rng.randint(0, 10**9)}"
        data = ("customer,order_ref,purchase_date,sales_chain,fulfilment,sku,license_model,quantity,start_date,"
                "end_date,maintenance_end,usage_period,notes\n"
                f"Fabrikam Inc,{ref}-1,{day},RedRock IT,,{sku},subscription,4,{day},{end},,,\n"
                f"Tailspin Toys,{ref}-2,{day},,,{sku},perpetual,2,,,,,\n"
                f",{ref}-3,{day},Northwind Distribution > BlueSky Resellers,stocking,{sku},perpetual,3,,,,,\n")
        plan = validate_orders(data.encode())
        assert plan.ok, plan.errors
        commit_orders(self.make.system, plan)

    def new_kind(self) -> None:
        """An organization's kind changes (no page does it; the read model follows anyway)."""
        o = self.world.orgs
        o["redrock"].kind = "distributor" if o["redrock"].kind == "reseller" else "reseller"

    STEPS = ("new_order", "new_order", "new_order", "activate_seats", "activate_seats", "return_seats", "move_host",
             "status", "correct", "hand_out_stock", "transfer", "import_orders", "new_kind")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_read_model_follows_every_change(make, seed):
    story = Story(make, random.Random(seed))
    db.session.commit()
    check()
    done = set()
    # Every kind of change once, then forty at random; the report compared now and then.
    for number, step in enumerate([*Story.STEPS, *(story.rng.choice(Story.STEPS) for _ in range(40))]):
        try:
            getattr(story, step)()
            done.add(step)
        except ServiceError:  # refused (a suspended entitlement's seats, a line ended...): nothing changed
            db.session.rollback()
        check()
        db.session.commit()
        if number % 10 == 9:
            same_report()
            same_report(group="tier", period="quarter")
            db.session.rollback()
    assert done == set(Story.STEPS)
    assert db.session.scalar(select(func.count()).where(Entitlement.purchase_date > TODAY)) > 0
    start = TODAY - timedelta(days=200)
    mid_month = start.replace(day=15)
    for options in ({}, {"group": "tier"}, {"kind": "reseller"}, {"kind": "distributor", "period": "quarter"},
                    {"since": mid_month}, {"since": mid_month.replace(day=25), "group": "tier"},
                    {"since": TODAY.replace(day=1)}, {"since": TODAY}):
        same_report(**options)


def test_the_rebuild_derives_what_the_hooks_keep(make):
    story = Story(make, random.Random(7))
    for _ in range(15):
        try:
            getattr(story, story.rng.choice(Story.STEPS))()
        except ServiceError:
            db.session.rollback()
        db.session.commit()
    kept = stored()
    rebuild_channel_sales(db.session.connection())
    assert stored() == kept == derived()
    assert kept["channel_month"] and kept["tier_month"] and kept["channel_customer"] and kept["channel_ending"]


def test_page_numbers_and_customers_on_a_later_page(make, staff_client):
    """Customers served are counted for the shown rows; a later page counts its own."""
    html = staff_client.get("/producer/reports?group=tier").get_data(as_text=True)
    assert "Direct sales" in html
    assert staff_client.get("/producer/reports?page=2").status_code == 200


def test_a_partners_seats_sold_come_from_the_read_model(staff_client, channel):
    redrock = channel.orgs["redrock"]
    page = staff_client.get(f"/producer/partners/{redrock.id}").get_data(as_text=True)
    seats = db.session.scalar(select(func.sum(ChannelMonth.seats)).where(ChannelMonth.partner_id == redrock.id))
    assert seats == 57  # 50 (Contoso's subscription) + 7 (Fabrikam's perpetual)
    assert ">57<" in page.replace(" ", "")


def test_dates_of_the_read_model_are_first_days_of_months(channel):
    months = db.session.scalars(select(ChannelMonth.month)).all() + db.session.scalars(select(TierMonth.month)).all()
    assert months and all(isinstance(m, date) and m.day == 1 for m in months)


def test_the_migration_fills_the_read_model_as_the_rebuild_does():
    """Migration 0015_producer_pages derives the tables with a copy of ``rebuild_statements`` (a migration is
    frozen history): the copy says the same, on both databases."""
    import importlib.util
    from pathlib import Path

    from portal.models.channel import rebuild_statements

    path = Path(__file__).resolve().parents[2] / "portal" / "migrations" / "versions" / "0015_producer_pages.py"
    spec = importlib.util.spec_from_file_location("migration_0015", path)
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    for dialect in ("postgresql", "sqlite"):
        assert migration._fill(dialect) == rebuild_statements(dialect)
