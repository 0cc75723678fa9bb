"""Reports: entitlements and seats sold through us per month or quarter, the activation rate,
customers, renewals; a distributor's split by the resellers below it. Aggregates in SQL: the
query count does not grow with entitlements. Decoys: RedRock's sales, Zephyr on everything."""

from __future__ import annotations

import csv
import io
import re
from datetime import date

import pytest

from portal.extensions import db
from portal.models.entitlements import PartnerCustomer

TODAY = date.today()


def _months_ago(n: int) -> date:
    index = TODAY.year * 12 + TODAY.month - 1 - n
    return date(index // 12, index % 12 + 1, 15)


def _label(d: date) -> str:
    return f"{d.year}-{d.month:02d}"


@pytest.fixture
def sales(make, channel):
    e = channel.entitlements
    e["germany"].purchase_date = _months_ago(2)
    skyline = make.partner("reseller", "Skyline Resale", supplied_by=channel.orgs["northwind"])
    channel.orgs["skyline"] = skyline
    e["skyline"] = make.entitlement(channel.orgs["fabrikam"], [channel.orgs["northwind"], skyline], seats=8)
    e["skyline"].purchase_date = _months_ago(4)
    nb = [channel.orgs["northwind"], channel.orgs["bluesky"]]
    e["old"] = make.entitlement(channel.orgs["tailspin"], nb, seats=99)
    e["old"].purchase_date = _months_ago(30)  # outside every window
    db.session.commit()
    return channel


def _figure(html: str, id_: str) -> str:
    return re.search(rf'id="{id_}">([^<]+)<', html).group(1)


def _period_row(html: str, label: str) -> list[str]:
    row = re.search(rf'<tr class="period-row"><th scope="row"[^>]*>{label}</th>(.*?)</tr>', html).group(1)
    return re.findall(r"<td[^>]*>([^<]*)</td>", row)


def test_a_reseller_sees_its_own_sales_per_month(sales, login_as):
    html = login_as(sales.users["bluesky_admin"]).get("/partner/reports").get_data(as_text=True)
    # Germany 10 (4 activated), Fabrikam 20 (5), Tailspin 5 + 3; stock and the 30-month-old sale left out.
    assert [_figure(html, i) for i in ("report-entitlements", "report-seats", "report-rate", "report-served",
                                       "report-ending")] == ["4", "38", "24%", "3", "1"]
    assert html.count('<tr class="period-row">') == 12
    assert _period_row(html, _label(_months_ago(2))) == ["1", "10", "4", "40%", "1"]
    assert _period_row(html, _label(TODAY)) == ["3", "28", "5", "18%", "2"]
    assert "split-table" not in html  # nobody below a reseller
    assert 'role="img" aria-labelledby="chart-title chart-desc"' in html and "<desc id=\"chart-desc\">" in html
    assert html.count('class="bar-sold"') == 12 and html.count('class="bar-activated"') == 12
    for decoy in ("RedRock", "Zephyr", "Wingtip"):
        assert decoy not in html


def test_a_distributor_sees_the_split_by_the_resellers_below_it(sales, login_as):
    client = login_as(sales.users["northwind_admin"])
    html = client.get("/partner/reports?period=quarter").get_data(as_text=True)
    # BlueSky's 4 sales plus its 2 stock entitlements (sold to BlueSky), Skyline's 1.
    assert [_figure(html, i) for i in ("report-entitlements", "report-seats")] == ["7", "66"]
    assert html.count('<tr class="period-row">') == 8
    cell = r'<td class="text-end">(\d+)</td>'
    rows = re.findall(r'<tr class="split-row"><th scope="row" class="fw-semibold">([^<]+)</th>' + cell * 3, html)
    assert rows == [("BlueSky Resellers", "6", "58", "9"), ("Skyline Resale", "1", "8", "0")]
    assert "RedRock" not in html and "Zephyr" not in html


def test_working_for_a_customer_narrows_the_report(sales, login_as):
    client = login_as(sales.users["bluesky_admin"])
    client.post("/partner/customer", data={"customer_id": sales.orgs["tailspin"].id})
    html = client.get("/partner/reports").get_data(as_text=True)
    assert [_figure(html, i) for i in ("report-entitlements", "report-seats", "report-served")] == ["2", "8", "1"]


def test_csv_holds_the_same_figures(sales, login_as):
    client = login_as(sales.users["northwind_admin"])
    response = client.get("/partner/reports.csv?period=month")
    assert response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["period", "sold_by", "entitlements", "seats_sold", "seats_activated", "activation_rate",
                       "customers"]
    totals = [r for r in rows if r[0] == "all"]
    assert totals == [["all", "all", "7", "66", "9", "0.136", "3"]]
    skyline = [r for r in rows if r[1] == "Skyline Resale"]
    assert skyline == [[_label(_months_ago(4)), "Skyline Resale", "1", "8", "0", "0.000", ""]]


def test_bad_period_and_members(sales, login_as):
    admin = login_as(sales.users["bluesky_admin"])
    assert admin.get("/partner/reports?period=decade").status_code == 400
    member = login_as(sales.users["bluesky_member"])
    assert member.get("/partner/reports").status_code == 403
    assert member.get("/partner/reports.csv").status_code == 403
    assert 'href="/partner/reports"' not in member.get("/partner/").get_data(as_text=True)


def test_query_count_is_constant(make, sales, login_as, count_queries):
    client = login_as(sales.users["northwind_admin"])

    def measure(url):
        db.session.commit()
        with count_queries() as counter:
            assert client.get(url).status_code == 200
        return counter.count

    urls = ["/partner/reports", "/partner/reports?period=quarter", "/partner/reports.csv"]
    small = [measure(u) for u in urls]
    for n in range(6):
        reseller = make.partner("reseller", f"Below {n}", supplied_by=sales.orgs["northwind"])
        for _ in range(2):
            entitlement = make.entitlement(make.customer(), [sales.orgs["northwind"], reseller], seats=3)
            entitlement.purchase_date = _months_ago(n)
    large = [measure(u) for u in urls]
    assert small == large
    assert db.session.query(PartnerCustomer).count() > 0
