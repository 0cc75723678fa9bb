"""The bench report's budget checks: which pages miss, and which are not the actor's to open."""

from bench.report import DatasetResult, FloorResult, PageResult, _table, misses


def _page(actor, page, statuses, *, p95=5.0, ratio=0.5, queries=(3,)):
    return PageResult(actor=actor, page=page, url=page, statuses=statuses, p50=p95 / 2, p95=p95, rps=300.0,
                      errors=0, queries=list(queries), samples=60, ratio=ratio, floor_rps=800.0)


def _run(*pages):
    return DatasetResult(kind="postgresql", size="200k", entitlements=200_000,
                         floor=FloorResult(p50=2.5, p95=3.3, rps=800.0), pages=list(pages))


def test_a_page_refused_to_one_actor_and_opened_by_another_is_not_a_miss():
    run = _run(_page("customer admin", "/customer/audit", {200: 60}),
               _page("customer member", "/customer/audit", {403: 60}))
    assert misses([run], []) == []
    rows = [line for line in _table(run, [run], 2) if "/customer/audit" in line]
    assert len(rows) == 2
    assert "403: not this actor's page" in rows[1] and "⚠" not in rows[1]


def test_a_page_nobody_opens_or_that_fails_now_and_then_is_a_miss():
    run = _run(_page("customer member", "/customer/users", {403: 60}),
               _page("reseller", "/partner/", {200: 59, 500: 1}),
               _page("reseller", "/partner/stock", {200: 60}, p95=61.0, ratio=0.12, queries=(16,)))
    found = misses([run], [])
    assert found == [
        "/customer/users as customer member at 200k on postgresql: answered {403: 60}",
        "/partner/ as reseller at 200k on postgresql: answered {500: 1}",
        "/partner/stock as reseller at 200k on postgresql: 16 SQL statements > 15",
        "/partner/stock as reseller at 200k on postgresql: p95 61.0 ms > 50 ms",
        "/partner/stock as reseller at 200k on postgresql: throughput 12% of the floor's < 30%",
    ]
    row = next(line for line in _table(run, [run], 2) if "/partner/stock" in line)
    assert "⚠ p95, SQL, throughput" in row
