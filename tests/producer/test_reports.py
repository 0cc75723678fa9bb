"""Channel reports: exact figures on a small channel, per partner and per tier; CSV; the chart."""

from __future__ import annotations

import csv
import io
import re

from portal.blueprints.producer.reports import build_report
from tests.producer.channel_world import TODAY

PERIOD = TODAY.strftime("%Y-%m")


def figures(report, key):
    row = next(r for r in report.rows if r.key == str(key))
    t = row.totals
    return (t.entitlements, t.seats_sold, t.seats_activated, t.customers, t.ending, t.stock)


def test_per_partner(channel):
    o = channel.orgs
    report = build_report(period="month", group="partner")
    assert figures(report, o["bluesky"].id) == (2, 15, 4, 1, 0, 1)
    assert figures(report, o["northwind"].id) == (2, 15, 4, 1, 0, 0)
    assert figures(report, o["redrock"].id) == (2, 57, 10, 2, 1, 0)
    # Initech is only attached (services): not in any chain, so no sales of its own.
    assert {r.key for r in report.rows} == {str(o[k].id) for k in ("bluesky", "northwind", "redrock")}
    redrock = next(r for r in report.rows if r.key == str(o["redrock"].id))
    assert redrock.totals.activation_rate == 10 / 57
    assert redrock.periods[PERIOD].seats_sold == 57
    bluesky = next(r for r in report.rows if r.key == str(o["bluesky"].id))
    assert bluesky.totals.stock_oldest == TODAY and bluesky.totals.stock_average_days == 0


def test_per_tier_with_direct_sales(channel):
    report = build_report(period="quarter", group="tier")
    assert figures(report, "reseller") == (4, 72, 14, 3, 1, 1)
    assert figures(report, "distributor") == (2, 15, 4, 1, 0, 0)
    assert figures(report, "direct")[:4] == (1, 3, 0, 1)
    quarter = f"{TODAY.year}-Q{(TODAY.month + 2) // 3}"
    assert report.periods[-1] == quarter
    assert report.totals_by_period[quarter].seats_sold == 72 + 15 + 3


def test_kind_filter_and_window(channel):
    report = build_report(group="partner", kind="distributor")
    assert [r.label for r in report.rows] == ["Northwind Distribution"]
    future = build_report(group="partner", since=TODAY.replace(day=1), today=TODAY.replace(day=1))
    if TODAY.day != 1:
        assert all(r.totals.entitlements == 0 for r in future.rows)


def test_report_page_and_csv(staff_client, channel):
    html = staff_client.get("/producer/reports").get_data(as_text=True)
    assert "<title>Channel reports · Entitlement Portal</title>" in html and html.count('id="report-table"') == 1
    row = re.search(rf'<tr id="report-row-{channel.orgs["redrock"].id}">(.*?)</tr>', html, re.S).group(1)
    assert re.findall(r'<td class="text-end">([^<]*)<', row)[:6] == ["2", "57", "10", "18 %", "2", "1"]
    assert '<title id="chart-svg-title">' in html and f"{PERIOD}: 87 seats sold, 18 activated" in html
    tier = staff_client.get("/producer/reports?group=tier&period=quarter").get_data(as_text=True)
    assert "Direct sales" in tier and "Resellers" in tier
    answer = staff_client.get("/producer/reports.csv?group=tier")
    assert answer.mimetype == "text/csv"
    rows = list(csv.DictReader(io.StringIO(answer.get_data(as_text=True))))
    total = next(r for r in rows if r["key"] == "reseller" and r["period"] == "total")
    assert (total["entitlements"], total["seats_sold"], total["seats_activated"], total["customers_served"],
            total["subscriptions_ending_90d"], total["stock"]) == ("4", "72", "14", "3", "1", "1")
    for bad in ("period=week", "group=x", "kind=customer", "since=2026-99-01", "since=1999-01-01"):
        assert staff_client.get(f"/producer/reports?{bad}").status_code == 400
