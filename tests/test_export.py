"""The CSV export of entitlements: scoped by the policy, streamed in pages, safe to open."""

from __future__ import annotations

import csv
import io
from collections import Counter
from datetime import date

import pytest
from sqlalchemy import func, select

from portal.exchange import HEADER, export_entitlements_csv
from portal.extensions import db
from portal.models import Entitlement, Organization, SalesChainLink
from portal.policy import Actor, system_actor
from portal.seed import seed
from portal.services.entitlements import LineSpec, create_entitlement, revoke_attachment

SELLER = "(sold: view, download, activate)"


def export(actor, **kw) -> tuple[int, list[dict[str, str]]]:
    out = io.StringIO()
    count = export_entitlements_csv(actor, out, **kw)
    out.seek(0)
    reader = csv.DictReader(out)
    assert reader.fieldnames == HEADER
    return count, list(reader)


def by_code(rows: list[dict[str, str]]) -> dict[str, dict[str, str]]:
    return {row["code"]: row for row in rows}


@pytest.fixture
def channel(make):
    """Acme -> Northwind -> BlueSky (stocking), Acme -> RedRock, Initech services; two customer groups.

    BlueSky's decoys: RedRock's sales to the same customers, and an entitlement where BlueSky's
    services attachment was revoked.
    """
    producer = make.producer()
    northwind = make.partner("distributor", "Northwind Distribution")
    bluesky = make.partner("reseller", "BlueSky Resellers", supplied_by=northwind, stocking=True)
    redrock = make.partner("reseller", "RedRock IT")
    initech = make.partner("service_provider", "Initech Services")
    contoso = make.customer("Contoso Group")
    contoso_de = make.customer("Contoso Germany", parent=contoso)
    munich = make.customer("Contoso Munich Plant", parent=contoso_de)
    contoso_us = make.customer("Contoso USA", parent=contoso)
    fabrikam = make.customer("Fabrikam Inc")
    e = {
        "de_studio": make.entitlement(contoso_de, [northwind, bluesky]),
        "us_sync": make.entitlement(contoso_us, [redrock], model="subscription", seats=50,
                                    start=date(2026, 1, 1), end=date(2026, 12, 31)),
        "munich_direct": make.entitlement(munich, model="usage", seats=1000),
        "group_redrock": make.entitlement(contoso, [redrock]),
        "fab_bluesky": make.entitlement(fabrikam, [northwind, bluesky]),
        "fab_redrock": make.entitlement(fabrikam, [redrock]),
        "stock": make.entitlement(bluesky, [northwind, bluesky], fulfilment="stocking"),
        "fab_revoked": make.entitlement(fabrikam, [redrock]),
    }
    make.attach(e["de_studio"], initech, permissions=("view", "download"))
    (revoked,) = make.attach(e["fab_revoked"], bluesky)
    revoke_attachment(make.system, revoked)
    db.session.commit()
    return {
        "producer": producer, "northwind": northwind, "bluesky": bluesky, "redrock": redrock,
        "initech": initech, "contoso": contoso, "contoso_de": contoso_de, "munich": munich,
        "fabrikam": fabrikam, "e": {key: ent.code for key, ent in e.items()},
    }


def test_producer_exports_everything(channel, make):
    count, rows = export(system_actor(channel["producer"]))
    assert count == len(rows) == 8
    codes = channel["e"]
    rows = by_code(rows)
    assert set(rows) == set(codes.values())
    de = rows[codes["de_studio"]]
    assert de["owner"] == "Contoso Germany"
    assert de["owner_path"] == "Contoso Group > Contoso Germany"
    assert de["fulfilment"] == "drop_ship"
    assert de["status"] == "active"
    assert de["sales_chain"] == "Northwind Distribution > BlueSky Resellers"
    assert de["attachments"] == (
        f"Northwind Distribution (distributed: view); BlueSky Resellers {SELLER}; "
        "Initech Services (services: view, download)"
    )
    assert de["lines"].startswith("SKU-")
    assert " perpetual 10 seats, maintenance until " in de["lines"]
    assert rows[codes["munich_direct"]]["owner_path"] == "Contoso Group > Contoso Germany > Contoso Munich Plant"
    assert rows[codes["munich_direct"]]["sales_chain"] == ""
    assert rows[codes["munich_direct"]]["lines"].endswith(" usage 1000 units per month")
    assert rows[codes["us_sync"]]["lines"].endswith(" subscription 50 seats, 2026-01-01 to 2026-12-31")
    stock = rows[codes["stock"]]
    assert (stock["owner"], stock["owner_path"], stock["fulfilment"]) == (
        "BlueSky Resellers", "BlueSky Resellers", "stocking")
    # A revoked attachment is not listed; the chain stays.
    assert rows[codes["fab_revoked"]]["attachments"] == f"RedRock IT {SELLER}"
    # Producer staff export the same as the system actor of the CLI.
    assert export(make.actor(channel["producer"], "staff")) == export(system_actor(channel["producer"]))


def test_customer_admin_exports_its_subtree_only(channel, make):
    codes = channel["e"]
    count, rows = export(make.actor(channel["contoso"]))
    assert count == 4
    assert {r["code"] for r in rows} == {codes["de_studio"], codes["us_sync"], codes["munich_direct"],
                                         codes["group_redrock"]}
    count, rows = export(make.actor(channel["contoso_de"], "member"))
    assert count == 2
    assert {r["code"] for r in rows} == {codes["de_studio"], codes["munich_direct"]}
    # The customer sees every partner attached to its entitlements.
    assert "Initech Services" in by_code(rows)[codes["de_studio"]]["attachments"]


def test_reseller_exports_only_attached_and_stock_with_its_own_attachment(channel, make):
    codes = channel["e"]
    count, rows = export(make.actor(channel["bluesky"]))
    assert count == 3
    rows = by_code(rows)
    assert set(rows) == {codes["de_studio"], codes["fab_bluesky"], codes["stock"]}
    # Decoys: RedRock's sales to the same customers, and the revoked attachment.
    for decoy in ("us_sync", "group_redrock", "fab_redrock", "fab_revoked", "munich_direct"):
        assert codes[decoy] not in rows
    for row in rows.values():
        assert row["attachments"] == f"BlueSky Resellers {SELLER}"
        assert row["sales_chain"] == "Northwind Distribution > BlueSky Resellers"
    assert "Initech" not in "".join(",".join(r.values()) for r in rows.values())
    # Scoped to one customer it serves.
    actor = make.actor(channel["bluesky"]).for_customer(channel["fabrikam"].id)
    count, rows = export(actor)
    assert [r["code"] for r in rows] == [codes["fab_bluesky"]]


def test_distributor_and_service_provider_see_only_their_own_attachment(channel, make):
    codes = channel["e"]
    count, rows = export(make.actor(channel["northwind"]))
    assert count == 3
    assert {r["code"] for r in rows} == {codes["de_studio"], codes["fab_bluesky"], codes["stock"]}
    assert {r["attachments"] for r in rows} == {"Northwind Distribution (distributed: view)"}
    count, rows = export(make.actor(channel["initech"]))
    assert count == 1
    (row,) = rows
    assert row["code"] == codes["de_studio"]
    assert row["attachments"] == "Initech Services (services: view, download)"
    # Not part of the chain: the service provider does not learn who sold it.
    assert row["sales_chain"] == ""


def test_small_batches_give_the_same_export(channel):
    producer = system_actor(channel["producer"])
    whole = export(producer)
    assert export(producer, chunk_size=3) == whole
    assert export(producer, chunk_size=8) == whole
    assert export(producer, chunk_size=1) == whole


def test_formula_injection_is_defused(make):
    producer = make.producer()
    evil_reseller = make.partner("reseller", "@SUM(1+1)*cmd")
    evil_customer = make.customer('=HYPERLINK("http://evil.example","click")')
    child = make.customer("-2+3 Site", parent=evil_customer)
    product = make.product(sku="+SKU")
    create_entitlement(make.system, owner=child, sales_chain=[evil_reseller], order_ref="=1+1",
                       lines=[LineSpec(product, "perpetual", 1)])
    db.session.commit()
    _, (row,) = export(system_actor(producer))
    assert row["owner"] == "'-2+3 Site"
    assert row["owner_path"] == "'=HYPERLINK(\"http://evil.example\",\"click\") > -2+3 Site"
    assert row["order_ref"] == "'=1+1"
    assert row["sales_chain"] == "'@SUM(1+1)*cmd"
    assert row["attachments"] == f"'@SUM(1+1)*cmd {SELLER}"
    assert row["lines"] == "'+SKU perpetual 1 seat"
    for value in row.values():
        assert value[:1] not in ("=", "+", "-", "@")


def test_query_count_does_not_grow_with_rows(app, count_queries):
    today = date(2026, 11, 1)

    def queries(actor, **kw) -> tuple[int, int]:
        assert actor.org.kind  # loaded again after the seed's commit, outside the count
        with count_queries() as counter:
            rows = export_entitlements_csv(actor, io.StringIO(), **kw)
        return rows, counter.count

    seed(customers=5, partners=6, entitlements=50, random_seed=3, today=today)
    producer = system_actor(db.session.scalar(select(Organization).where(Organization.kind == "producer")))
    small = queries(producer)
    seed(customers=5, partners=6, entitlements=450, random_seed=4, today=today)
    large = queries(producer)
    assert (small[0], large[0]) == (50, 500)
    assert large[1] == small[1] <= 5
    # Read in batches of 50 rows: the same statements (one cursor each), however many rows.
    rows, count = queries(producer, chunk_size=50)
    assert rows == 500
    assert count == small[1]


@pytest.mark.parametrize("kind", ["reseller", "customer"])
def test_query_count_per_page_is_constant_for_scoped_actors(app, count_queries, kind):
    seed(customers=4, partners=4, entitlements=300, random_seed=5, today=date(2026, 11, 1))
    if kind == "reseller":
        org_id = db.session.scalar(
            select(SalesChainLink.partner_id).group_by(SalesChainLink.partner_id)
            .order_by(func.count().desc(), SalesChainLink.partner_id).limit(1)
        )
    else:
        roots = Counter(
            int(path.split("/")[1]) for path in db.session.scalars(
                select(Organization.path).join(Entitlement, Entitlement.owner_id == Organization.id)
                .where(Organization.kind == "customer"))
        )
        org_id = min(roots, key=lambda root: (-roots[root], root))  # the group owning the most
    actor = Actor(user=None, org=db.session.get(Organization, org_id), role="admin")
    with count_queries() as counter:
        rows = export_entitlements_csv(actor, io.StringIO())
    assert rows > 40
    assert counter.count <= 5
    statements = counter.count
    with count_queries() as counter:
        assert export_entitlements_csv(actor, io.StringIO(), chunk_size=10) == rows
    assert counter.count == statements


def test_cli_export(channel, app):
    result = app.test_cli_runner().invoke(args=["portal", "export", "entitlements"])
    assert result.exit_code == 0, result.output
    assert "8 entitlements exported" in result.stderr
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert {r["code"] for r in rows} == set(channel["e"].values())
