"""``flask portal ...``: demo, seed, worker, mail, export, import, invite."""

from __future__ import annotations

import time

import click
from flask import Flask
from sqlalchemy import select

from portal.database import begin_write
from portal.extensions import db
from portal.models import Organization


def _producer() -> Organization:
    producer = db.session.scalar(select(Organization).where(Organization.kind == "producer"))
    if producer is None:
        raise click.ClickException("No producer yet: run `flask portal demo` or `flask portal seed` first.")
    return producer


def _base_url(app: Flask) -> str:
    """The portal's public address (BASE_URL; `make demo` sets it from HOST and PORT)."""
    return app.config["BASE_URL"].rstrip("/")


def register_cli(app: Flask) -> None:
    @app.cli.group("portal")
    def portal_group():
        """Entitlement Portal commands."""

    @portal_group.command("demo")
    def demo_command():
        """Load the demo story (docs/concepts.md) into an empty database and print the logins."""
        from portal.demo import DEMO_PASSWORD, demo_logins, load_demo

        begin_write()
        try:
            story = load_demo()
        except RuntimeError as error:
            raise click.ClickException(str(error)) from None
        db.session.commit()
        logins = demo_logins(story["orgs"])
        width = max(len(email) for email, _ in logins) + 2
        click.echo(f"Demo story loaded. Sign in at {_base_url(app)}/login with:")
        for email, what in logins:
            click.echo(f"  {email:<{width}}{what}")
        click.echo(f"Password for every demo user: {DEMO_PASSWORD}")

    @portal_group.command("seed")
    @click.option("--customers", default=1000, show_default=True, help="Top-level customer organizations.")
    @click.option("--partners", default=50, show_default=True, help="Distributors, resellers, service providers.")
    @click.option("--entitlements", default=10000, show_default=True)
    @click.option("--seed", "random_seed", default=1, show_default=True, help="Random seed (same seed, same data).")
    @click.option("--today", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
                  help="The date the data set counts back from (default: today); fixes dates too.")
    def seed_command(customers: int, partners: int, entitlements: int, random_seed: int, today):
        """Generate a deterministic synthetic data set of the given size."""
        from portal.seed import seed

        started = time.monotonic()
        counts = seed(customers=customers, partners=partners, entitlements=entitlements, random_seed=random_seed,
                      today=today.date() if today else None)
        elapsed = time.monotonic() - started
        click.echo(", ".join(f"{n} {k}" for k, n in counts.items()) + f" in {elapsed:.1f}s")

    @portal_group.command("export")
    @click.argument("what", type=click.Choice(["entitlements"]))
    @click.option("-o", "--output", type=click.File("w", encoding="utf-8"), default="-")
    def export_command(what: str, output):
        """Write a CSV export (spec section 7) to a file or standard output."""
        from portal.exchange import export_entitlements_csv
        from portal.policy import system_actor

        rows = export_entitlements_csv(system_actor(_producer()), output)
        click.echo(f"{rows} entitlements exported", err=True)

    @portal_group.command("import")
    @click.argument("file", type=click.File("rb"))
    @click.option("--dry-run", is_flag=True, help="Check every row and show what would be created; write nothing.")
    def import_command(file, dry_run: bool):
        """Import orders from a CSV file (docs/import.md): all rows or none."""
        from portal.policy import system_actor
        from portal.services.imports import commit_orders, validate_orders

        started = time.monotonic()
        begin_write()
        plan = validate_orders(file.read())
        if not plan.ok:
            db.session.rollback()
            for error in plan.errors:
                click.echo(f"line {error.line}: {error.column + ': ' if error.column else ''}{error.message}", err=True)
            if plan.error_count > len(plan.errors):
                click.echo(f"... {plan.error_count - len(plan.errors)} more errors", err=True)
            raise click.ClickException(f"{plan.error_count} errors in {plan.rows} rows: nothing was imported.")
        summary = f"{len(plan.orders)} entitlements with {plan.line_count} lines from {plan.rows} rows"
        if dry_run:
            db.session.rollback()
            click.echo(f"Valid: {summary} would be created (dry run, nothing written).")
            return
        commit_orders(system_actor(_producer()), plan)
        db.session.commit()
        click.echo(f"Imported {summary} in {time.monotonic() - started:.1f}s.")

    @portal_group.command("worker")
    @click.option("--once", is_flag=True, help="Deliver what is due, then stop.")
    @click.option("--interval", default=2.0, show_default=True, help="Seconds between polls.")
    def worker_command(once: bool, interval: float):
        """Deliver queued mail from the outbox over SMTP, with retries and backoff."""
        from portal.services.outbox import run_worker

        run_worker(once=once, interval=interval, echo=lambda m: click.echo(m, err=True))

    @portal_group.group("mail")
    def mail_group():
        """Look at the mail outbox and requeue failed mail."""

    @mail_group.command("status")
    def mail_status_command():
        """How many mails are queued, sent and failed; the failed ones with their last error."""
        from portal.models import OutboxEmail
        from portal.services.mail import outbox_counts

        counts = outbox_counts()
        click.echo(", ".join(f"{n} {status}" for status, n in counts.items()))
        failed = db.session.scalars(select(OutboxEmail).where(OutboxEmail.status == "failed")
                                    .order_by(OutboxEmail.id).limit(20))
        for email in failed:
            click.echo(f"  failed #{email.id} to {email.to_addr} after {email.attempts} attempt(s): "
                       f"{email.last_error}")
        if counts["failed"] > 20:
            click.echo(f"  ... and {counts['failed'] - 20} more")

    @mail_group.command("requeue")
    @click.option("--id", "ids", type=int, multiple=True, help="A failed mail to requeue (repeatable).")
    @click.option("--all", "everything", is_flag=True, help="Requeue every failed mail.")
    def mail_requeue_command(ids: tuple[int, ...], everything: bool):
        """Queue failed mail again with its attempts reset; the worker sends it on its next pass."""
        from portal.policy import system_actor
        from portal.services.errors import ServiceError
        from portal.services.mail import requeue_failed

        if bool(ids) == everything:
            raise click.UsageError("Give either --id N (one or more times) or --all.")
        begin_write()
        try:
            emails = requeue_failed(system_actor(_producer()), None if everything else ids)
        except ServiceError as error:
            raise click.ClickException(error.message) from None
        db.session.commit()
        click.echo(f"{len(emails)} failed mail(s) queued again"
                   + (": " + ", ".join(f"#{email.id}" for email in emails) if emails else ""))

    @portal_group.command("invite")
    @click.argument("email")
    @click.argument("org_name")
    @click.argument("role")
    def invite_command(email: str, org_name: str, role: str):
        """Invite EMAIL into the organization named ORG_NAME with ROLE (the link goes out by mail)."""
        from portal.policy import system_actor
        from portal.services.accounts import invite_user
        from portal.services.errors import ServiceError

        org = db.session.scalar(select(Organization).where(Organization.name == org_name))
        if org is None:
            raise click.ClickException(f"No organization named {org_name!r}.")
        try:
            _, token = invite_user(system_actor(_producer()), org, email, role)
        except ServiceError as error:
            raise click.ClickException(error.message) from None
        db.session.commit()
        click.echo(f"Invitation queued for {email}: {_base_url(app)}/invitations/{token}")

