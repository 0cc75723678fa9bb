"""Exchange: the CSV export of entitlements (spec section 7).

One row per entitlement the actor may see (``policy.visible_entitlements``): code, owner
with its hierarchy path, fulfilment, status, order reference, purchase date, sales chain,
active attachments and lines. The export is a stream of a fixed number of statements whatever
the number of rows: the entitlements, their lines, their chains and their attachments, each
one ordered statement by entitlement id (read through a server-side cursor on PostgreSQL, so
200,000 entitlements never sit in memory at once), merged row by row as they arrive, plus the
names of the organizations that have sub-organizations (for the owners' hierarchy paths).
All statements are sent before the first row is written (``EntitlementExport``), so a web
response starts with its first rows and a request counts every statement it ran.

What a partner sees in it follows the policy: only its own attachment of each entitlement,
and the sales chain only where the partner is part of it (a service provider attached by the
customer does not learn through which resellers the customer bought).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from datetime import date
from typing import IO, Any

from sqlalchemy import Connection, Result, select
from sqlalchemy.orm import aliased

from portal.extensions import db
from portal.models import Attachment, Entitlement, EntitlementLine, Organization, Product, SalesChainLink
from portal.policy import Actor, attachment_scope, visible_entitlements

# Rows fetched at a time from each statement's cursor.
CHUNK_SIZE = 2000
HEADER = [
    "code",
    "owner",
    "owner_path",
    "fulfilment",
    "status",
    "order_ref",
    "purchase_date",
    "sales_chain",
    "attachments",
    "lines",
]
# A spreadsheet treats a cell starting with one of these as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
# A streamed response sends its text in pieces of about this many characters (the first piece:
# the header and the first row).
STREAM_PIECE = 64 * 1024


def export_entitlements_csv(actor: Actor, fileobj: IO[str], *, chunk_size: int = CHUNK_SIZE,
                            where: Sequence[Any] = ()) -> int:
    """Write the entitlements ``actor`` may see as CSV to ``fileobj``; returns the rows written.

    ``where``: further clauses on ``Entitlement`` (a list's search and filters), within the scope.
    """
    export = EntitlementExport(actor, where=where, chunk_size=chunk_size)
    writer = csv.writer(fileobj)
    writer.writerow(HEADER)
    written = 0
    for row in export:
        writer.writerow(row)
        written += 1
    return written


class CsvStream:
    """The CSV as pieces of text, for a streamed response body (a WSGI iterable with ``close``).

    Its statements run when it is made (within the request: counted, checked, failing there
    with a proper error page), on a connection of its own in one snapshot (REPEATABLE READ on
    PostgreSQL): the request's session is closed when the view returns (Flask 3.1 tears the
    app context down before the body is sent), while the rows are read and written as the
    client takes them. The connection goes back to the pool at the last row or when the
    server closes the response, whichever comes first.
    """

    def __init__(self, actor: Actor, *, where: Sequence[Any] = (), chunk_size: int = CHUNK_SIZE) -> None:
        connection = db.engine.connect()
        if connection.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        try:
            self._export = EntitlementExport(actor, where=where, chunk_size=chunk_size, connection=connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        self._pieces = self._write()

    def __iter__(self) -> Iterator[str]:
        return self._pieces

    def _write(self) -> Iterator[str]:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(HEADER)
        first = True
        try:
            for row in self._export:
                writer.writerow(row)
                if first or out.tell() >= STREAM_PIECE:
                    yield out.getvalue()
                    out.seek(0)
                    out.truncate()
                    first = False
            if out.tell() or first:
                yield out.getvalue()
        finally:
            self._release()

    def close(self) -> None:
        """The server is done with the response (sent, or the client went away)."""
        self._pieces.close()  # runs the writer's ``finally`` when it had started
        self._release()

    def _release(self) -> None:
        if self._connection is None:
            return
        connection, self._connection = self._connection, None
        try:
            self._export.close()
        finally:
            connection.close()  # ends the read-only transaction, returns the connection to the pool


def stream_entitlements_csv(actor: Actor, *, where: Sequence[Any] = (), chunk_size: int = CHUNK_SIZE) -> CsvStream:
    """The CSV for a streamed response (``CsvStream``)."""
    return CsvStream(actor, where=where, chunk_size=chunk_size)


# The export's own aliases, made once (an aliased class costs more to make than the statements
# that use it; they are immutable): every statement selects from these, never from the tables
# the list's search and filters name (see ``EntitlementExport``).
_OWNER = aliased(Organization, name="owner")
_LINE, _PRODUCT = aliased(EntitlementLine, name="export_line"), aliased(Product, name="export_product")
_LINK, _SELLER = aliased(SalesChainLink, name="export_link"), aliased(Organization, name="export_seller")
_SHOWN, _PARTNER = aliased(Attachment, name="export_attachment"), aliased(Organization, name="export_partner")
_ORG, _CHILD = aliased(Organization, name="export_org"), aliased(Organization, name="export_child")
_UPPER = aliased(Organization, name="export_upper")


class EntitlementExport:
    """The export's rows (lists of cells, formulas defused), in entitlement id order.

    Creating it sends every statement; iterating it reads them in step: each of the lines,
    chains and attachments statements is ordered by entitlement id like the entitlements
    themselves, so the rows of one entitlement are the next ones of each (a merge, as a
    database merges two sorted inputs). Every statement selects from its own aliases, so the
    list's search and filters (subqueries on ``Entitlement`` that may name lines, chains or
    attachments) never correlate with the stream's tables.
    """

    def __init__(self, actor: Actor, *, where: Sequence[Any] = (), chunk_size: int = CHUNK_SIZE,
                 connection: Connection | None = None) -> None:
        # What the rows need of the actor, read now (its organization may be detached later).
        self._partner_id = actor.org.id if actor.is_partner else None
        self._own_name = actor.org.name
        owner = _OWNER  # the policy's subqueries on organization stay uncorrelated
        scoped = visible_entitlements(actor).where(*where)
        # The entitlements of the export, for the other statements (none for producer staff
        # exporting everything: every line, chain and attachment is in it).
        ids = None if (actor.is_producer and not where) else scoped.with_only_columns(Entitlement.id)
        batch = {"yield_per": chunk_size}
        connection = connection if connection is not None else db.session.connection()
        self._results: list[Result] = []

        def run(statement) -> Result:
            result = connection.execute(statement.execution_options(**batch))
            self._results.append(result)
            return result

        self._entitlements = run(
            scoped.join(owner, owner.id == Entitlement.owner_id)
            .with_only_columns(Entitlement.id, Entitlement.code, Entitlement.fulfilment, Entitlement.status,
                               Entitlement.order_ref, Entitlement.purchase_date, owner.name, owner.path, owner.kind)
            .order_by(Entitlement.id))
        line, product = _LINE, _PRODUCT
        lines = (
            select(line.entitlement_id, product.sku, line.license_model, line.quantity, line.start_date,
                   line.end_date, line.maintenance_end, line.usage_period)
            .join(product, product.id == line.product_id)
            .order_by(line.entitlement_id, line.id))
        link, seller = _LINK, _SELLER
        chains = (select(link.entitlement_id, link.partner_id, seller.name)
                  .join(seller, seller.id == link.partner_id)
                  .order_by(link.entitlement_id, link.position))
        # As ``policy.visible_attachments`` shows them: a partner only its own, everyone else all
        # of them, in the order they were granted.
        shown, partner = _SHOWN, _PARTNER
        attachments = (
            select(shown.entitlement_id, partner.name, shown.relation, shown.can_view, shown.can_download,
                   shown.can_activate)
            .join(partner, partner.id == shown.partner_id)
            .where(shown.active.is_(True), attachment_scope(actor, shown))
            .order_by(shown.entitlement_id, shown.granted_at, shown.id))
        if ids is not None:
            lines = lines.where(line.entitlement_id.in_(ids))
            chains = chains.where(link.entitlement_id.in_(ids))
            attachments = attachments.where(shown.entitlement_id.in_(ids))
        self._lines = _Merge(run(lines))
        self._chains = _Merge(run(chains))
        self._attachments = _Merge(run(attachments))
        self._names = dict(connection.execute(_ancestor_names(None if ids is None else scoped)).all())

    def __iter__(self) -> Iterator[list[Any]]:
        names, partner_id = self._names, self._partner_id
        try:
            # A partner sees a chain only when it is part of it (see the module docstring).
            for row in self._entitlements:
                entitlement_id, code, fulfilment, status, order_ref, purchased, owner_name, owner_path, owner_kind = row
                chain = self._chains.take(entitlement_id)
                if partner_id is not None and all(link[1] != partner_id for link in chain):
                    chain = []
                # Another partner's stock a partner is attached to: whose stock it is, it does not learn.
                hidden = partner_id is not None and owner_kind != "customer" and owner_name != self._own_name
                yield [_safe(cell) for cell in (
                    code,
                    "" if hidden else owner_name,
                    "" if hidden else _hierarchy_path(owner_name, owner_path, names),
                    fulfilment,
                    status,
                    order_ref or "",
                    _iso(purchased),
                    " > ".join(link[2] for link in chain),
                    "; ".join(f"{a[1]} ({a[2]}: {', '.join(_permissions(a))})"
                              for a in self._attachments.take(entitlement_id)),
                    "; ".join(_describe_line(line) for line in self._lines.take(entitlement_id)),
                )]
        finally:
            self.close()

    def close(self) -> None:
        """Close every statement's cursor (also when a response is abandoned half-way)."""
        for result in self._results:
            result.close()


def _ancestor_names(scoped):
    """id, name of the organizations above the owners of ``scoped`` entitlements (every
    organization with sub-organizations when None): the names of the owners' hierarchy paths,
    climbed level by level in one recursive statement."""
    org, child = _ORG, _CHILD
    if scoped is None:
        return select(org.id, org.name).where(org.id.in_(select(child.parent_id)))
    start = select(child.parent_id.label("id")).where(
        child.id.in_(scoped.with_only_columns(Entitlement.owner_id)), child.parent_id.is_not(None))
    above = start.cte("export_above", recursive=True)
    upper = _UPPER
    above = above.union(
        select(upper.parent_id).join(above, upper.id == above.c.id).where(upper.parent_id.is_not(None)))
    return select(org.id, org.name).where(org.id.in_(select(above.c.id)))


class _Merge:
    """A statement's rows ordered by entitlement id (the first column), taken one entitlement at a time."""

    _NOT_READ = object()

    def __init__(self, result: Result) -> None:
        self._rows = iter(result)
        self._head: Any = self._NOT_READ

    def take(self, entitlement_id: int) -> list[Any]:
        """The rows of this entitlement; those of entitlements before it are skipped (none are
        expected: every statement reads the same entitlements)."""
        head = next(self._rows, None) if self._head is self._NOT_READ else self._head
        found = []
        while head is not None and head[0] <= entitlement_id:
            if head[0] == entitlement_id:
                found.append(head)
            head = next(self._rows, None)
        self._head = head
        return found


def _hierarchy_path(name: str, path: str, names: dict[int, str]) -> str:
    """'Contoso Group > Contoso Germany > Contoso Munich Plant', as ``policy.hierarchy_path``."""
    ancestors = [int(part) for part in path.strip("/").split("/")[:-1] if part]
    return " > ".join([*(names.get(i, "?") for i in ancestors), name])


def _permissions(attachment: Any) -> list[str]:
    flags = (("view", attachment[3]), ("download", attachment[4]), ("activate", attachment[5]))
    return [name for name, on in flags if on]


def _describe_line(line: Any) -> str:
    """'ACME-STUDIO perpetual 10 seats, from 2026-04-15, maintenance until 2027-04-15'."""
    if line.license_model == "usage":
        parts = [f"{line.sku} usage {line.quantity} units per {line.usage_period or 'period'}"]
    else:
        parts = [f"{line.sku} {line.license_model} {line.quantity} seat{'' if line.quantity == 1 else 's'}"]
    if line.license_model == "subscription":
        parts.append(f"{_iso(line.start_date)} to {_iso(line.end_date)}")
    else:
        if line.start_date:
            parts.append(f"from {_iso(line.start_date)}")
        if line.end_date:
            parts.append(f"until {_iso(line.end_date)}")
    if line.maintenance_end:
        parts.append(f"maintenance until {_iso(line.maintenance_end)}")
    return ", ".join(parts)


def _iso(value: date | None) -> str:
    return value.isoformat() if value else ""


def _safe(value: Any) -> Any:
    """Defuse spreadsheet formulas: a text cell starting with = + - @ (or tab, CR) gets a quote."""
    if isinstance(value, str) and value.startswith(FORMULA_START):
        return "'" + value
    return value
