"""The outbox worker: deliver queued mail over SMTP, with retries and backoff.

Mail is queued by ``portal.services.mail.queue_email`` in the same transaction as the
change that causes it; this module sends it. Each message goes through three short steps:

1. **Claim** due rows (up to ``CLAIM_BATCH``) in a transaction of their own and lease them,
   by moving their ``next_attempt_at`` a lease period ahead, then commit (one locking read
   and one UPDATE for the whole batch); rows a pass claimed
   but did not try (it stopped first) are given back at once. PostgreSQL locks the rows with
   ``SELECT ... FOR UPDATE SKIP LOCKED``, so any number of workers claim different rows side
   by side; SQLite, where ``FOR UPDATE`` compiles to nothing, starts the claim with
   ``BEGIN IMMEDIATE`` (``begin_write``), which serializes claims.
2. **Send** it over SMTP with no transaction open. No database lock is held during network
   I/O: on SQLite a write lock held while an SMTP server dawdles would stall every request
   of the web app that wants to write.
3. **Mark** it sent (or record the failure and the next attempt, or give the row back) and
   commit. Marking sent is one ``UPDATE ... WHERE id = :id AND status = 'queued'`` in a
   short write transaction of its own: a row that is no longer queued keeps its outcome, so
   a row is marked exactly once. Failures re-read the row locked, since the next attempt
   depends on its count.

Delivery is at least once. A crash between send and mark leaves the row queued; it becomes
due again when the lease runs out and is sent a second time with the same ``Message-ID``
header, which lets the receiver drop the duplicate. Nothing else sends a message twice: a
claimed row is not due for any other worker until its lease has run out, and the lease
(``OUTBOX_LEASE_SECONDS``) is far longer than one SMTP conversation may take.

Only the server's answer about a message costs that message an attempt:

- a 5xx answer to the recipient or the content is permanent: the row is ``failed`` at once;
- any other answer about it (4xx, a 5xx to ``MAIL FROM``), or the connection lost or timed
  out after the server has answered ``MAIL FROM``, is retried after
  ``OUTBOX_BACKOFF_SECONDS * 2 ** (attempts - 1)`` seconds, capped at
  ``OUTBOX_BACKOFF_MAX_SECONDS``; the row is ``failed`` when ``OUTBOX_MAX_ATTEMPTS`` attempts
  have failed.

An **unavailable server** costs no attempt, however long it lasts: connection refused,
greeting, STARTTLS or login refused, a timeout or a closed connection before the server
answered ``MAIL FROM``, or ``421`` (closing) in answer to it. (A connection kept open from
the previous message gets one fresh connection first, since servers close idle ones.) The
row is given back at its old place in the queue, due at once, with ``last_error`` saying
why; the pass stops there, leaving the other due messages untouched rather than each
waiting out the same failure. ``run_worker`` then waits ``OUTBOX_BACKOFF_SECONDS`` (at least
its poll interval) before it asks the server again, and nothing is lost when it comes back.
``failed`` rows stay until an operator requeues them (``portal.services.mail.requeue_failed``,
``flask portal mail requeue``).

``deliver_due`` runs its own transactions, so it refuses to start inside a unit of work
that has changes, flushed or not (see ``portal.services.mail.has_pending_writes``): it would
otherwise commit them.

Everything here runs in an application context and never touches ``request``.
"""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import smtplib
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.errors import MessageError
from email.utils import format_datetime, parseaddr

from flask import current_app
from sqlalchemy import bindparam, select, update
from sqlalchemy.exc import SQLAlchemyError

from portal.database import begin_write
from portal.extensions import db
from portal.models import OutboxEmail, utcnow
from portal.models.base import UTCDateTime
from portal.services.mail import has_pending_writes
from portal.services.mime import build_mime

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_MAX_SECONDS = 3600
DEFAULT_LEASE_SECONDS = 900
# Headers the worker sets itself; a row's extra ``headers`` may not override them.
RESERVED_HEADERS = frozenset(
    {"from", "to", "cc", "bcc", "subject", "message-id", "date", "mime-version",
     "content-type", "content-transfer-encoding", "sender", "return-path"}
)


class ServerUnavailable(Exception):
    """The SMTP server gave no answer about the message: the message is not to blame.

    It could not be reached, greeted, secured or logged in to, or it closed the connection
    or timed out before it answered ``MAIL FROM``, or it answered that with 421 (closing).
    """


@dataclass(frozen=True)
class _Outgoing:
    """What the worker needs to send one claimed row, read before its claim commits."""

    id: int
    message_id: str
    to_addr: str
    subject: str
    body_text: str
    body_html: str | None
    headers: dict
    created_at: datetime
    due_at: datetime  # its place in the queue, given back if the server cannot be reached

    @classmethod
    def of(cls, row) -> _Outgoing:
        """From a row of ``_CLAIM_COLUMNS``."""
        return cls(row.id, row.message_id, row.to_addr, row.subject, row.body_text,
                   row.body_html, dict(row.headers or {}), row.created_at, row.next_attempt_at)


# Rows a worker claims (leases) at once; each is still sent and marked sent in its own commit.
CLAIM_BATCH = 20
JOB_SLICE_SECONDS = 5.0  # fan-out work per worker pass before mail is sent again


def retry_delay(attempts: int, base_seconds: float, max_seconds: float) -> timedelta:
    """Wait before the next attempt after ``attempts`` failed ones: doubling from the base, capped."""
    exponent = min(max(attempts - 1, 0), 30)  # 2**30 * any sane base is far beyond the cap
    return timedelta(seconds=min(base_seconds * 2**exponent, max_seconds))


def build_message(outgoing: _Outgoing, mail_from: str) -> bytes:
    """The MIME message for one row, as the bytes to send: text body, optional HTML
    alternative, its own Message-ID (see ``portal.services.mime``).

    Raises ``ValueError`` for control characters (line breaks among them) in a header name
    or value, which keeps header injection out.
    """
    headers = [
        ("From", mail_from),
        ("To", outgoing.to_addr),
        ("Subject", outgoing.subject),
        ("Date", format_datetime(outgoing.created_at)),
        ("Message-ID", outgoing.message_id),
    ]
    headers.extend((str(name), str(value)) for name, value in outgoing.headers.items()
                   if str(name).lower() not in RESERVED_HEADERS)
    return build_mime(headers, outgoing.body_text, outgoing.body_html)


class _Smtp(smtplib.SMTP):
    """``smtplib.SMTP`` that remembers the reply to ``MAIL FROM``, the first answer about a message.

    Trouble before that reply is the server's; from then on it concerns the message.
    """

    mail_reply: int | None = None

    def mail(self, sender, options=()):
        code, reply = super().mail(sender, options)
        self.mail_reply = code
        return code, reply


class _SmtpConnection:
    """One SMTP connection, opened on first use and reused for the rest of a pass."""

    def __init__(self, config):
        self.config = config
        self.smtp: _Smtp | None = None
        # The envelope sender is the bare address of MAIL_FROM, as send_message() used to take it.
        self.envelope_from = parseaddr(config["MAIL_FROM"])[1] or config["MAIL_FROM"]

    def send(self, message: bytes, to_addr: str) -> None:
        """Send one message; ``ServerUnavailable`` if the server gave no answer about it.

        A connection kept open from the previous message may have been closed by the server
        meanwhile (idle or per-connection limits): then the message gets one fresh connection.
        """
        reused = self.smtp is not None
        try:
            self._send(message, to_addr)
        except ServerUnavailable:
            if not reused:
                raise
            self._send(message, to_addr)

    def _send(self, message: bytes, to_addr: str) -> None:
        if self.smtp is None:
            self.smtp = self._open()
        smtp = self.smtp
        smtp.mail_reply = None
        try:
            # The envelope recipient is the bare address, even if the row has "Name <address>".
            smtp.sendmail(self.envelope_from, [envelope_address(to_addr)], message)
        except (OSError, smtplib.SMTPServerDisconnected, smtplib.SMTPSenderRefused) as error:
            if smtp.mail_reply not in (None, 421):
                raise  # the server had accepted or refused this message's MAIL FROM
            self.reset()
            raise ServerUnavailable(_describe(error)) from error

    def _open(self) -> _Smtp:
        config = self.config
        smtp = None
        try:
            smtp = _Smtp(config["SMTP_HOST"], int(config["SMTP_PORT"]),
                         timeout=float(config["SMTP_TIMEOUT"]))
            smtp.ehlo()
            if config.get("SMTP_STARTTLS"):
                smtp.starttls(context=ssl.create_default_context(cafile=config.get("SMTP_CA_FILE")))
                smtp.ehlo()
            if config.get("SMTP_USERNAME"):
                smtp.login(config["SMTP_USERNAME"], config.get("SMTP_PASSWORD") or "")
        except (OSError, smtplib.SMTPException) as error:
            if smtp is not None:
                _close_quietly(smtp)
            raise ServerUnavailable(_describe(error)) from error
        return smtp

    def reset(self) -> None:
        """Drop the connection after an error; the next message opens a fresh one."""
        if self.smtp is not None:
            _close_quietly(self.smtp)
            self.smtp = None

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (OSError, smtplib.SMTPException):
                _close_quietly(self.smtp)
            self.smtp = None


# "address" or "Display Name <address>" with nothing to unquote: the address is plain to see.
_PLAIN_ADDRESS = re.compile(r'(?:[^<>"()\[\]\\,;:]*<)?([^\s<>"()\[\]\\,;:@]+@[^\s<>"()\[\]\\,;:@]+)>?')


def envelope_address(to_addr: str) -> str:
    """The bare address of a recipient, even if the row has "Name <address>".

    The common plain forms are read with a regular expression; anything else (quotes,
    comments) goes through ``parseaddr``, which costs about 0.4 ms a mail.
    """
    match = _PLAIN_ADDRESS.fullmatch(to_addr)
    if match and (to_addr.endswith(">") == ("<" in to_addr)):
        return match[1]
    return parseaddr(to_addr)[1] or to_addr


def _close_quietly(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(OSError):
        smtp.close()


def _describe(error: BaseException) -> str:
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "; ".join(f"{addr}: {code} {_text(reply)}" for addr, (code, reply) in error.recipients.items())
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {_text(error.smtp_error)}"
    return f"{type(error).__name__}: {error}"


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


def _is_permanent(error: smtplib.SMTPException) -> bool:
    """A 5xx answer to this recipient or this content: retrying will not help."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(500 <= code < 600 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPDataError):
        return 500 <= error.smtp_code < 600
    return False


def _begin() -> None:
    """Start a fresh write transaction (on SQLite ``BEGIN IMMEDIATE``, never a leftover read)."""
    _end_idle_transaction()
    begin_write()


_CLAIM_COLUMNS = (OutboxEmail.id, OutboxEmail.message_id, OutboxEmail.to_addr, OutboxEmail.subject,
                  OutboxEmail.body_text, OutboxEmail.body_html, OutboxEmail.headers,
                  OutboxEmail.created_at, OutboxEmail.next_attempt_at)


def _claim_batch(now: datetime, lease: timedelta, size: int) -> list[_Outgoing]:
    """Claim up to ``size`` of the oldest due rows in a transaction of their own and lease them
    (other workers skip them); each is then sent and marked in its own commit.

    Two statements for the whole batch: the locking read of what sending needs (plain rows,
    no ORM objects to track) and one UPDATE that moves their ``next_attempt_at`` past the lease.
    """
    _begin()
    claimed = [_Outgoing.of(row) for row in db.session.execute(
        select(*_CLAIM_COLUMNS)
        .where(OutboxEmail.status == "queued", OutboxEmail.next_attempt_at <= now)
        .order_by(OutboxEmail.next_attempt_at, OutboxEmail.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    )]
    if claimed:
        db.session.execute(
            update(OutboxEmail)
            .where(OutboxEmail.id.in_([outgoing.id for outgoing in claimed]))
            .values(next_attempt_at=now + lease)
            .execution_options(synchronize_session=False))
    db.session.commit()
    return claimed


def _release(claimed: list[_Outgoing]) -> None:
    """Rows claimed but not tried (the pass stopped first): back in their place, due at once,
    no attempt counted. If the database cannot be reached their lease simply runs out."""
    if not claimed:
        return
    try:
        _begin()
        for outgoing in claimed:
            db.session.execute(
                update(OutboxEmail).where(OutboxEmail.id == outgoing.id, OutboxEmail.status == "queued")
                .values(next_attempt_at=outgoing.due_at))
        db.session.commit()
    except SQLAlchemyError:
        db.session.rollback()


def _locked_row(email_id: int) -> OutboxEmail | None:
    """The claimed row, locked, in a fresh write transaction; None if it is no longer queued.

    Only possible when our lease ran out and another worker finished the row meanwhile (or
    someone deleted it): then its outcome stands.
    """
    _begin()
    email = db.session.get(OutboxEmail, email_id, with_for_update=True, populate_existing=True)
    if email is None or email.status != "queued":
        db.session.commit()
        return None
    return email


_outbox = OutboxEmail.__table__
# Built once: constructing the statement anew cost more CPU than running it.
_MARK_SENT = (
    update(_outbox)
    .where(_outbox.c.id == bindparam("email_id"), _outbox.c.status == "queued")
    .values(status="sent", attempts=_outbox.c.attempts + 1, sent_at=bindparam("now", type_=UTCDateTime),
            last_error=None)
)


def _mark_sent(email_id: int, now: datetime) -> None:
    """One UPDATE in a short transaction of its own; a row no longer queued (our lease ran
    out and another worker finished it, or it was deleted) matches nothing and keeps its outcome."""
    _begin()
    db.session.execute(_MARK_SENT, {"email_id": email_id, "now": now})
    db.session.commit()


def _mark_failed(email_id: int, now: datetime, error: str, *, permanent: bool) -> str | None:
    """Record a failed attempt; returns the new status (``queued`` again, or ``failed``)."""
    config = current_app.config
    email = _locked_row(email_id)
    if email is None:
        return None
    email.attempts += 1
    email.last_error = error[:2000]
    if permanent or email.attempts >= int(config["OUTBOX_MAX_ATTEMPTS"]):
        email.status = "failed"
    else:
        email.next_attempt_at = now + retry_delay(
            email.attempts,
            float(config["OUTBOX_BACKOFF_SECONDS"]),
            float(config.get("OUTBOX_BACKOFF_MAX_SECONDS", DEFAULT_BACKOFF_MAX_SECONDS)),
        )
    status = email.status
    log.warning("outbox: %s to %s %s: %s", email.message_id, email.to_addr,
                "failed" if status == "failed" else "will be retried", error)
    db.session.commit()  # touch no row after this: a read would open the next transaction
    return status


def _give_back(outgoing: _Outgoing, error: str) -> None:
    """The server could not be asked: end the lease without charging an attempt.

    The row goes back to its old place in the queue, due at once; ``last_error`` says why
    it is still waiting.
    """
    email = _locked_row(outgoing.id)
    if email is None:
        return
    email.next_attempt_at = outgoing.due_at
    email.last_error = error[:2000]
    log.warning("outbox: %s to %s waits for the server (no attempt counted): %s",
                email.message_id, email.to_addr, error)
    db.session.commit()


def _end_idle_transaction() -> None:
    """The worker runs its own transactions: refuse pending changes, end a read-only one.

    Changes already flushed count too: committing them here would commit half of the
    caller's unit of work behind its back.
    """
    session = db.session()
    if has_pending_writes(session):
        raise RuntimeError("deliver_due() runs its own transactions and would commit your pending "
                           "changes: commit or roll back first")
    if session.in_transaction():
        session.commit()


def deliver_due(now: datetime | None = None, limit: int = 100,
                stop: threading.Event | None = None) -> dict[str, int]:
    """Deliver up to ``limit`` due queued mails, each claimed and marked in its own commits.

    ``now`` is the worker's clock (tests move it forward); ``stop``, when set, ends the
    pass after the message in hand. Returns counts: ``sent``, ``retried`` (failed this time,
    queued for a later attempt), ``failed`` (given up) and ``deferred`` (1 when the pass
    stopped because the server was unavailable; that message was given back, no attempt
    counted). ``attempts`` on a row counts every answered try, the successful one included.
    Call it outside any unit of work: it commits, and raises ``RuntimeError`` before
    touching anything if the session has pending changes, flushed or not.
    """
    return _deliver(now, limit, stop)[0]


def _deliver(now: datetime | None, limit: int,
             stop: threading.Event | None) -> tuple[dict[str, int], str | None]:
    """One pass of ``deliver_due``; also returns why the server was unavailable, if it was."""
    config = current_app.config
    lease = timedelta(seconds=float(config.get("OUTBOX_LEASE_SECONDS", DEFAULT_LEASE_SECONDS)))
    counts = {"sent": 0, "retried": 0, "failed": 0, "deferred": 0}
    server_error = None
    _end_idle_transaction()
    connection = _SmtpConnection(config)
    pending: deque[_Outgoing] = deque()
    try:
        for handled in range(limit):
            if stop is not None and stop.is_set():
                break
            clock = now or utcnow()
            if not pending:
                pending.extend(_claim_batch(clock, lease, min(CLAIM_BATCH, limit - handled)))
                if not pending:
                    break
            outgoing = pending.popleft()
            try:
                message = build_message(outgoing, config["MAIL_FROM"])
            except (ValueError, TypeError, UnicodeError, MessageError) as error:
                _failure(counts, outgoing, clock, f"unsendable message: {error}", permanent=True)
                continue
            try:
                connection.send(message, outgoing.to_addr)
            except ServerUnavailable as error:
                server_error = f"SMTP server unavailable: {error}"
                _give_back(outgoing, server_error)
                counts["deferred"] += 1
                break  # the rest would only wait out the same failure; they stay due
            except smtplib.SMTPException as error:
                connection.reset()
                _failure(counts, outgoing, clock, _describe(error), permanent=_is_permanent(error))
                continue
            except OSError as error:  # connection lost mid-message, timeout
                connection.reset()
                _failure(counts, outgoing, clock, _describe(error))
                continue
            _mark_sent(outgoing.id, clock)
            counts["sent"] += 1
    finally:
        _release(list(pending))
        connection.close()
    return counts, server_error


def _failure(counts: dict[str, int], outgoing: _Outgoing, now: datetime, error: str, *,
             permanent: bool = False) -> None:
    status = _mark_failed(outgoing.id, now, error, permanent=permanent)
    if status is not None:
        counts["failed" if status == "failed" else "retried"] += 1


def run_worker(once: bool = False, interval: float = 2.0,
               echo: Callable[[str], None] = print, limit: int = 100) -> None:
    """Deliver due mail now and then every ``interval`` seconds until SIGTERM or Ctrl-C.

    With ``once``, deliver everything that is due and return. A stop request lets the message
    in hand finish (so it is not sent twice) and then returns without waiting out the interval.
    While the SMTP server is unavailable, it is asked again only every
    ``OUTBOX_BACKOFF_SECONDS`` (at least ``interval``), and each such pass says so.
    """
    stop = threading.Event()
    in_main_thread = threading.current_thread() is threading.main_thread()
    if in_main_thread:  # signal handlers can only be installed there
        previous = signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
    try:
        if not once:
            echo(f"outbox worker: polling every {interval:g}s (SIGTERM or Ctrl-C stops)")
        while not stop.is_set():
            wait = interval
            try:
                jobs = _notification_work(stop, once)
                if jobs:
                    echo(f"notifications: {jobs}")
                total, server_error = _drain(limit, stop)
            except SQLAlchemyError as error:
                if once:
                    raise
                # The database may be restarting; the claimed row (if any) keeps its lease.
                db.session.rollback()
                echo(f"outbox worker: database error, retrying in {interval:g}s: {error}")
                total = server_error = None
            if total is not None and (once or total["sent"] or total["retried"] or total["failed"]):
                echo(f"outbox: {total['sent']} sent, {total['retried']} to retry, {total['failed']} failed")
            if server_error is not None:
                wait = max(interval, float(current_app.config["OUTBOX_BACKOFF_SECONDS"]))
                echo(f"outbox: {server_error}; no attempt counted, "
                     + ("mail stays queued" if once else f"asking again in {wait:g}s"))
            if once:
                return
            db.session.remove()  # hand the connection back to the pool while idle
            stop.wait(wait)
        echo("outbox worker: stopped")
    except KeyboardInterrupt:
        echo("outbox worker: interrupted")
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)


def _notification_work(stop: threading.Event, once: bool) -> str | None:
    """Expand notification jobs a batch at a time (all of them with ``once``, else for a few
    seconds so that mail keeps flowing) and queue the reminders that are due."""
    from portal.services import notifications

    batches = notifications.run_jobs(stop=stop, max_seconds=None if once else JOB_SLICE_SECONDS)
    reminded = notifications.send_reminders()
    if not batches and not reminded:
        return None
    return f"{batches} batch(es) of fan-out done, {reminded} reminder(s) queued"


def _drain(limit: int, stop: threading.Event) -> tuple[dict[str, int], str | None]:
    """Passes of ``deliver_due`` until one is not full (so nothing more is due), the server
    is unavailable, or a stop; the totals and the server's trouble, if any."""
    total = {"sent": 0, "retried": 0, "failed": 0, "deferred": 0}
    while not stop.is_set():
        counts, server_error = _deliver(None, limit, stop)
        for key, value in counts.items():
            total[key] += value
        if server_error is not None:
            return total, server_error
        if sum(counts.values()) < limit:
            break
    return total, None
