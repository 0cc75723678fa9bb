"""The notification pages through the real client: compose with inline errors (4xx, nothing
written), preview, send, progress, the recipients' table with exact counts, and a fixed number
of SQL statements whatever the number of customers behind a notification."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Notification, NotificationMessage, OutboxEmail, Product
from portal.policy import system_actor
from portal.services import notifications as notices
from portal.services.entitlements import LineSpec, attach_partner, create_entitlement
from tests.factories import write_transaction


@pytest.fixture
def world(make):
    producer = make.producer()
    staff_user = make.actor(producer, "staff").user
    bluesky = make.partner("reseller", "BlueSky Resellers")
    redrock = make.partner("reseller", "RedRock IT")
    studio = Product(sku="STUDIO", name="Acme Studio")
    other = Product(sku="SYNC", name="Acme Cloud Sync")
    db.session.add_all([studio, other])
    db.session.commit()
    return {"producer": producer, "staff": staff_user, "bluesky": bluesky, "redrock": redrock,
            "studio": studio, "other": other, "make": make}


def customers(world, n: int, *, start: int = 0) -> None:
    """``n`` customers owning a Studio entitlement sold by BlueSky, each with a contact, and as
    many decoys: the same customers' Cloud Sync entitlements (another product)."""
    make, system = world["make"], system_actor(world["producer"])
    for i in range(start, start + n):
        org = make.customer(f"Customer {i:03}")
        org.notification_emails = f"it@customer{i:03}.example"
        create_entitlement(system, owner=org, lines=[LineSpec(world["studio"], "perpetual", 5)],
                           sales_chain=[world["bluesky"]])
        decoy = create_entitlement(system, owner=org, lines=[LineSpec(world["other"], "perpetual", 5)],
                                   sales_chain=[world["redrock"]])
        attach_partner(system, [decoy], world["bluesky"], relation="services")
    db.session.commit()


def staff_client(login_as, world):
    return login_as(world["staff"], world["producer"])


def compose_form(world, **changes) -> dict:
    return {"kind": "security_patch", "title": "Patch now", "body": "Install **it**.",
            "product_id": str(world["studio"].id), "release_id": "", **changes}


def test_compose_saves_a_draft_and_previews_it(world, login_as):
    customers(world, 3)
    client = staff_client(login_as, world)
    response = client.post("/producer/notifications/new", data=compose_form(world))
    assert response.status_code == 302
    db.session.rollback()  # the test's session reads what the requests committed
    notification = db.session.scalar(select(Notification))
    assert response.location.endswith(f"/producer/notifications/{notification.id}")
    page = client.get(response.location).get_data(as_text=True)
    assert re.search(r'id="preview-organizations">3<', page) and re.search(r'id="preview-emails">3<', page)
    assert "What Customer 000 gets" in page and "BlueSky Resellers" in page and "RedRock" not in page
    page = client.get(f"/producer/notifications/{notification.id}?customer=customer 002").get_data(as_text=True)
    assert "What Customer 002 gets" in page  # the exact name, whatever its case
    page = client.get(f"/producer/notifications/{notification.id}?customer=Customer").get_data(as_text=True)
    assert "No customer organization has exactly that name." in page and "What Customer" not in page


@pytest.mark.parametrize(("changes", "field", "message"), [
    ({"title": ""}, "title", "The title is required."),
    ({"title": "x" * 201}, "title", "Field cannot be longer than 200 characters."),
    ({"body": ""}, "body", "Write the message."),
    ({"kind": "rumour"}, "kind", "Not a valid choice."),
    ({"product_id": "999999"}, "product_id", "Not a valid choice."),
    ({"kind": "general", "remind_after_days": "7"}, "remind_after_days", "Only security patches"),
    ({"remind_after_days": "0"}, "remind_after_days", "Remind after 1 to 365 days."),
])
def test_bad_input_is_refused_next_to_its_field_and_nothing_is_written(world, login_as, changes, field, message):
    client = staff_client(login_as, world)
    response = client.post("/producer/notifications/new", data=compose_form(world, **changes))
    assert response.status_code == 422
    page = response.get_data(as_text=True)
    error = re.search(rf'<p class="error" id="{field}-error">([^<]*)</p>', page)
    assert error and message in error.group(1)
    db.session.rollback()
    assert db.session.scalar(select(func.count()).select_from(Notification)) == 0


def test_send_queues_a_job_and_the_page_follows_it(world, login_as):
    customers(world, 3)
    client = staff_client(login_as, world)
    client.post("/producer/notifications/new", data=compose_form(world))
    db.session.rollback()  # the test's session reads what the requests committed
    notification = db.session.scalar(select(Notification))
    assert client.post(f"/producer/notifications/{notification.id}/send").status_code == 302
    db.session.rollback()
    assert notification.state == "checking" and notification.organizations_total == 3
    assert db.session.scalar(select(func.count()).select_from(NotificationMessage)) == 0  # the worker's job
    progress = client.get(f"/producer/notifications/{notification.id}/progress", headers={"HX-Request": "true"})
    assert "Checking every message" in progress.get_data(as_text=True)
    assert 'hx-trigger="every 2s"' in progress.get_data(as_text=True)
    # Sending twice is refused (409), nothing changes.
    assert client.post(f"/producer/notifications/{notification.id}/send").status_code == 409

    notices.run_jobs()
    polled = client.get(f"/producer/notifications/{notification.id}/progress?polling=1",
                        headers={"HX-Request": "true"})
    assert polled.status_code == 204 and polled.headers["HX-Refresh"] == "true"  # done: the page reloads
    page = client.get(f"/producer/notifications/{notification.id}").get_data(as_text=True)
    assert len(re.findall(r'class="recipient-row"', page)) == 3
    assert 'id="count-queued">3<' in page
    failed = client.get(f"/producer/notifications/{notification.id}?status=failed").get_data(as_text=True)
    assert "recipient-row" not in failed


def test_a_notification_of_another_installation_does_not_exist(world, login_as):
    client = staff_client(login_as, world)
    for url in ("/producer/notifications/12345", "/producer/notifications/12345/progress",
                "/producer/notifications/99999999999"):
        assert client.get(url).status_code == 404
    assert client.post("/producer/notifications/12345/send").status_code == 404


def _sent(world, login_as) -> tuple[object, int]:
    client = staff_client(login_as, world)
    client.post("/producer/notifications/new", data=compose_form(world))
    db.session.rollback()
    notification = db.session.scalar(select(Notification).order_by(Notification.id.desc()))
    client.post(f"/producer/notifications/{notification.id}/send")
    notices.run_jobs()
    return client, notification.id


def test_pages_run_the_same_sql_whatever_the_number_of_customers(world, login_as, count_queries):
    def statements(client, notification_id) -> dict[str, int]:
        counts = {}
        for url in ("/producer/notifications", f"/producer/notifications/{notification_id}",
                    f"/producer/notifications/{notification_id}/progress"):
            db.session.expire_all()
            with count_queries() as counter:
                assert client.get(url).status_code == 200
            counts[url.replace(str(notification_id), "<id>")] = counter.count
        return counts

    customers(world, 3)
    few = statements(*_sent(world, login_as))
    customers(world, 9, start=3)
    write_transaction()
    db.session.commit()
    many = statements(*_sent(world, login_as))
    assert few == many
    assert db.session.scalar(select(func.count()).select_from(OutboxEmail)) == 3 + 12


def test_the_recipients_table_counts_its_own_mail_by_status_and_search(app, world, login_as):
    """The table's total comes from the status counts (or a count, when searched): pages and
    filters count this notification's mail only, not an earlier one's (the decoys)."""
    customers(world, 3)
    _sent(world, login_as)  # the decoy: three mails of an earlier notification
    client, notification_id = _sent(world, login_as)
    app.config["PAGE_SIZE"] = 2
    url = f"/producer/notifications/{notification_id}"

    def rows_and_pages(query: str = "") -> tuple[int, str | None]:
        page = client.get(url + query).get_data(as_text=True)
        pages = re.search(r"Page 1 of (\d+)", page)
        return len(re.findall(r'class="recipient-row"', page)), pages and pages.group(1)

    assert rows_and_pages() == (2, "2")
    assert rows_and_pages("?status=queued") == (2, "2")
    assert rows_and_pages("?status=failed") == (0, None)
    assert rows_and_pages("?q=customer001") == (1, None)
    assert rows_and_pages("?q=customer00") == (2, "2")
