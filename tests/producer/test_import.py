"""Importing orders from CSV: row-by-row validation with line numbers, preview, all or nothing."""

from __future__ import annotations

import time
from datetime import date, timedelta

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Attachment, AuditEvent, Entitlement, EntitlementLine, SalesChainLink
from portal.models.entitlements import PartnerCustomer, RowCount
from portal.models.sales import PartnerSale, PartnerSaleEnd, rebuild_sales
from portal.services.imports import commit_orders, validate_orders
from tests.producer.channel_world import fresh

HX = {"HX-Request": "true"}
HEADER = ("customer,order_ref,purchase_date,sales_chain,fulfilment,sku,license_model,quantity,start_date,end_date,"
          "maintenance_end,usage_period,notes\n")
END = (date.today() + timedelta(days=200)).isoformat()


def count(model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


GOOD = HEADER + (
    "Contoso Group,PO-1,2026-01-10,Northwind Distribution > BlueSky Resellers,,STUDIO,perpetual,10,,,2027-01-10,,\n"
    "Contoso Group,PO-1,2026-01-10,Northwind Distribution > BlueSky Resellers,,SYNC,subscription,5,"
    "2026-01-10,2027-01-09,,,\n"
    "Fabrikam Inc,PO-2,2026-02-01,RedRock IT,,STUDIO,perpetual,3,,,,,\n"
    ",PO-3,2026-02-02,Northwind Distribution > BlueSky Resellers,stocking,STUDIO,perpetual,4,,,,,\n"
    "Tailspin Toys,,2026-02-03,,,SYNC,usage,1000,,,,year,direct sale\n"
)
BAD = HEADER + (
    "Contoso Group,PO-1,2026-01-10,Northwind Distribution > BlueSky Resellers,,STUDIO,perpetual,10,,,,,\n"
    "Nobody Ltd,PO-2,2026-01-10,,,STUDIO,perpetual,1,,,,,\n"
    "Fabrikam Inc,PO-3,2026-13-01,BlueSky Resellers,,NOPE,lease,0,,,,,\n"
    "Contoso Group,PO-1,2026-01-11,Northwind Distribution > BlueSky Resellers,,STUDIO,perpetual,10,,,,,\n"
    "Tailspin Toys,PO-4,2026-01-10,Zephyr Decoy Resellers,,SYNC,subscription,5,,,,,\n"
    ",PO-5,2026-01-10,RedRock IT,stocking,STUDIO,perpetual,1,,,,,\n"
)


def errors_of(plan) -> set[tuple[int, str | None]]:
    return {(e.line, e.column) for e in plan.errors}


def test_validation_reports_each_error_with_its_line(channel):
    plan = validate_orders(BAD.encode())
    assert not plan.ok
    assert errors_of(plan) == {
        (3, "customer"),  # Nobody Ltd
        (4, "sales_chain"), (4, "sku"), (4, "license_model"), (4, "quantity"), (4, "purchase_date"),
        (5, "purchase_date"),  # PO-1 again with another date
        (6, "sales_chain"), (6, "end_date"),  # Zephyr is suspended; a subscription without dates
        (7, "fulfilment"),  # RedRock holds no stock
    }
    messages = {(e.line, e.column): e.message for e in plan.errors}
    assert messages[(4, "sales_chain")] == ("BlueSky Resellers is not supplied by the producer; "
                                            "the chain must follow the channel.")
    assert "write them as on line 2" in messages[(5, "purchase_date")]


def test_header_problems_are_line_one(channel):
    plan = validate_orders(b"customer,sku,colour\nA,B,C\n")
    assert [(e.line, e.message[:15]) for e in plan.errors] == [(1, "Unknown column:"), (1, "Missing columns")]
    assert validate_orders(b"\xff\xfe").errors[0].line == 1
    assert validate_orders(HEADER.encode()).errors[0].message == "The file has no rows below its header."


def test_commit_writes_orders_chains_attachments_and_read_models(channel, make):
    plan = validate_orders(GOOD.encode())
    assert plan.ok and len(plan.orders) == 4 and plan.line_count == 5
    before = {m: count(m) for m in (Entitlement, EntitlementLine, SalesChainLink, Attachment)}
    ids = commit_orders(make.system, plan)
    db.session.commit()
    assert len(ids) == 4
    assert count(Entitlement) - before[Entitlement] == 4
    assert count(EntitlementLine) - before[EntitlementLine] == 5
    assert count(SalesChainLink) - before[SalesChainLink] == 5
    assert count(Attachment) - before[Attachment] == 5
    po1 = db.session.scalar(select(Entitlement).where(Entitlement.order_ref == "PO-1"))
    assert [link.partner.name for link in po1.chain] == ["Northwind Distribution", "BlueSky Resellers"]
    assert sorted((a.partner.name, a.relation, tuple(a.permissions)) for a in po1.attachments) == [
        ("BlueSky Resellers", "sold", ("view", "download", "activate")),
        ("Northwind Distribution", "distributed", ("view",))]
    stock = db.session.scalar(select(Entitlement).where(Entitlement.order_ref == "PO-3"))
    assert (stock.owner.name, stock.fulfilment) == ("BlueSky Resellers", "stocking")
    # The read models followed: BlueSky serves Contoso Group now; the row count grew by 4.
    bluesky = channel.orgs["bluesky"]
    served = db.session.scalar(select(PartnerCustomer.entitlements).where(
        PartnerCustomer.partner_id == bluesky.id, PartnerCustomer.customer_id == channel.orgs["contoso"].id))
    assert served == 1
    assert db.session.get(RowCount, "entitlement").value == count(Entitlement)
    # What each partner sold: PO-1 for Northwind and BlueSky (its subscription line's end too),
    # PO-2 for RedRock, PO-3 (BlueSky's stock) for Northwind only; as derived from the tables.
    sales = {(s.partner_id, s.entitlement_id) for s in db.session.scalars(
        select(PartnerSale).where(PartnerSale.entitlement_id.in_(ids)))}
    assert sales == {(channel.orgs[p].id, ids[i]) for p, i in (("northwind", 0), ("bluesky", 0), ("redrock", 1),
                                                                ("northwind", 2))}
    assert db.session.scalar(select(func.count()).select_from(PartnerSaleEnd).where(
        PartnerSaleEnd.entitlement_id == ids[0])) == 2
    kept = [db.session.execute(select(t).order_by(*t.primary_key)).all()
            for t in (PartnerSale.__table__, PartnerSaleEnd.__table__)]
    rebuild_sales(db.session.connection())
    assert [db.session.execute(select(t).order_by(*t.primary_key)).all()
            for t in (PartnerSale.__table__, PartnerSaleEnd.__table__)] == kept
    assert count(AuditEvent) and db.session.scalar(select(func.count()).select_from(AuditEvent).where(
        AuditEvent.action == "entitlement.create", AuditEvent.subject_id.in_([str(i) for i in ids]))) == 4
    # The same file again: every order is on record already.
    again = validate_orders(GOOD.encode())
    assert not again.ok and {e.column for e in again.errors} == {"order_ref"}


def _upload(client, text: str, **kw):
    """A multipart upload built here: the test client's own builder spools a large body to a
    temporary file it never closes (a ResourceWarning)."""
    boundary = "----portal-test-boundary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"orders.csv\"\r\n"
            f"Content-Type: text/csv\r\n\r\n").encode() + text.encode() + f"\r\n--{boundary}--\r\n".encode()
    return client.post("/producer/import", data=body, content_type=f"multipart/form-data; boundary={boundary}",
                       **kw)


def test_upload_preview_then_commit(staff_client, channel):
    before = count(Entitlement)
    answer = _upload(staff_client, BAD, headers=HX)
    assert answer.status_code == 422
    html = answer.get_data(as_text=True)
    assert "10 errors in 6 rows: nothing was imported." in html and "<html" not in html
    assert "<td>4</td><td>sku</td><td>No product has the SKU “NOPE”.</td>" in html
    answer = _upload(staff_client, GOOD)
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    assert "4 entitlements with 5 lines will be created" in html
    fresh()
    assert count(Entitlement) == before  # a preview writes nothing
    digest = __import__("hashlib").sha256(GOOD.encode()).hexdigest()
    assert f'value="{digest}"' in html
    # A forged hash names no stored file.
    assert staff_client.post("/producer/import/commit", data={"sha256": "0" * 64}).status_code == 422
    assert staff_client.post("/producer/import/commit", data={"sha256": "../../x"}).status_code == 422
    answer = staff_client.post("/producer/import/commit", data={"sha256": digest}, headers=HX)
    assert answer.status_code == 200 and "Imported 4 entitlements." in answer.get_data(as_text=True)
    fresh()
    assert count(Entitlement) == before + 4
    # Committing the same preview twice: validated again, refused, nothing written.
    answer = staff_client.post("/producer/import/commit", data={"sha256": digest})
    assert answer.status_code == 422 and "on record already" in answer.get_data(as_text=True)
    fresh()
    assert count(Entitlement) == before + 4


def _big(rows: int, bad_row: int | None = None) -> str:
    """``rows`` rows: orders of two lines (one order ref each pair), a two-tier chain on half."""
    out = [HEADER]
    customers = ["Contoso Group", "Contoso Germany", "Fabrikam Inc", "Tailspin Toys"]
    for i in range(rows):
        order = i // 2
        chain = "Northwind Distribution > BlueSky Resellers" if order % 2 else "RedRock IT"
        sku = "NOPE" if bad_row is not None and i + 1 == bad_row else "STUDIO"
        out.append(f"{customers[order % 4]},BIG-{order},2026-03-01,{chain},,{sku},perpetual,{1 + i % 9},,,{END},,\n")
    return "".join(out)


def test_a_bad_row_9999_writes_nothing(staff_client, channel):
    before = count(Entitlement)
    answer = _upload(staff_client, _big(10_000, bad_row=9_999))
    assert answer.status_code == 422
    assert "<td>10000</td><td>sku</td>" in answer.get_data(as_text=True)  # row 9,999 is line 10,000
    fresh()
    assert count(Entitlement) == before


def test_ten_thousand_rows_in_under_30_seconds(staff_client, channel, capsys):
    data = _big(10_000)
    before = count(Entitlement)
    started = time.perf_counter()
    answer = _upload(staff_client, data)
    checked = time.perf_counter()
    assert answer.status_code == 200
    assert "5000 entitlements with 10000 lines will be created" in answer.get_data(as_text=True)
    digest = __import__("hashlib").sha256(data.encode()).hexdigest()
    answer = staff_client.post("/producer/import/commit", data={"sha256": digest})
    done = time.perf_counter()
    assert answer.status_code == 302
    fresh()
    assert count(Entitlement) == before + 5000
    with capsys.disabled():
        print(f"\n10,000-row import: check {checked - started:.2f}s, commit {done - checked:.2f}s, "
              f"total {done - started:.2f}s ({db.engine.dialect.name})")
    assert done - started < 30


def test_cli_import_and_dry_run(app, channel, tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(GOOD)
    runner = app.test_cli_runner()
    before = count(Entitlement)
    result = runner.invoke(args=["portal", "import", str(path), "--dry-run"])
    assert result.exit_code == 0 and "4 entitlements with 5 lines from 5 rows would be created" in result.output
    fresh()
    assert count(Entitlement) == before
    result = runner.invoke(args=["portal", "import", str(path)])
    assert result.exit_code == 0 and "Imported 4 entitlements" in result.output
    fresh()
    assert count(Entitlement) == before + 4
    bad = tmp_path / "bad.csv"
    bad.write_text(BAD)
    result = runner.invoke(args=["portal", "import", str(bad)])
    assert result.exit_code == 1 and "line 3: customer: No customer is called “Nobody Ltd”." in result.output
