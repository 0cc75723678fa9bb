"""Importing orders from CSV: validate every row, preview, then commit all or nothing.

The columns are documented in ``docs/import.md``. Rows that share an ``order_ref`` are the
lines of one entitlement (their order-level columns must agree); a row without one is an
entitlement of its own.

``validate_orders(data)`` reads the whole file, loads every lookup it needs once (customers and
partners by the names the file uses, products, channel edges, order references already on
record) and checks each row against them: no query per row. It returns an ``ImportPlan``:
the orders it would create and every error with its line number. ``commit_orders(actor, plan)``
writes a plan without errors with bulk inserts (entitlements, lines, sales chains, the chain's
attachments, one audit event per entitlement and one for the import), then brings the derived
read models up to date, all in the caller's transaction: the caller commits once, or rolls back
and nothing was written.

Views keep the uploaded bytes under the instance folder keyed by their SHA-256 and validate them
again when the preview is committed: a re-posted preview is never trusted.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from sqlalchemy import func, insert, select

from portal.extensions import db
from portal.forms import CONTROL_CHARACTERS_BUT_LINES, INTEGER_MAX
from portal.models import (
    Attachment,
    AuditEvent,
    ChannelRelationship,
    Entitlement,
    EntitlementLine,
    Organization,
    Product,
    SalesChainLink,
    utcnow,
)
from portal.models.channel import add_channel_sales
from portal.models.entitlements import LICENSE_MODELS, add_to_row_counts, apply_served_delta, served_pairs
from portal.models.orgs import PARTNER_KINDS
from portal.models.sales import refresh_sales
from portal.policy import Actor, can
from portal.services.audit import record
from portal.services.codes import activation_code, entitlement_code
from portal.services.errors import NotAllowed, ServiceError

COLUMNS = ("customer", "order_ref", "purchase_date", "sales_chain", "fulfilment", "sku", "license_model",
           "quantity", "start_date", "end_date", "maintenance_end", "usage_period", "notes")
REQUIRED = ("customer", "sku", "license_model", "quantity")
ORDER_COLUMNS = ("customer", "purchase_date", "sales_chain", "fulfilment", "notes")
CHAIN_SEPARATOR = " > "
MAX_ROWS = 50_000
MAX_ERRORS = 500  # shown; the count says how many there were
CHUNK = 900  # ids or names per IN (...): under SQLite's bound-parameter limit


@dataclass
class RowError:
    line: int
    column: str | None
    message: str


@dataclass
class PlannedLine:
    line: int
    product: Product
    license_model: str
    quantity: int
    start_date: date | None
    end_date: date | None
    maintenance_end: date | None
    usage_period: str | None


@dataclass
class PlannedOrder:
    line: int  # of its first row
    owner: Organization
    order_ref: str | None
    purchase_date: date
    chain: list[Organization]
    fulfilment: str
    notes: str | None
    lines: list[PlannedLine] = field(default_factory=list)
    signature: tuple = ()  # the order-level columns as read, for comparing the next rows

    @property
    def seats(self) -> int:
        return sum(line.quantity for line in self.lines if line.license_model != "usage")


@dataclass
class ImportPlan:
    sha256: str
    rows: int = 0
    orders: list[PlannedOrder] = field(default_factory=list)
    errors: list[RowError] = field(default_factory=list)
    error_count: int = 0

    @property
    def ok(self) -> bool:
        return self.error_count == 0 and bool(self.orders)

    @property
    def line_count(self) -> int:
        return sum(len(o.lines) for o in self.orders)

    def error(self, line: int, column: str | None, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(RowError(line, column, message))


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --- reading ------------------------------------------------------------------------------


def _parse_date(text: str) -> date:
    return date.fromisoformat(text)  # YYYY-MM-DD; raises ValueError


def _chunks(values: list, size: int = CHUNK):
    for start in range(0, len(values), size):
        yield values[start:start + size]


@dataclass
class Lookups:
    """Everything a row is checked against, loaded once per file."""

    customers_by_name: dict[str, list[Organization]]
    customers_by_id: dict[int, Organization]
    partners_by_name: dict[str, list[Organization]]
    products: dict[str, Product]
    edges: set[tuple[int, int]]
    producer_id: int | None
    known_refs: set[str]


def _load_lookups(rows: list[dict[str, str]]) -> Lookups:
    names, ids, refs = set(), set(), set()
    for row in rows:
        customer = (row.get("customer") or "").strip()
        if customer.startswith("#") and customer[1:].isdigit() and len(customer) < 11:
            ids.add(int(customer[1:]))
        elif customer:
            names.add(customer.lower())
        if (ref := (row.get("order_ref") or "").strip()):
            refs.add(ref)
    customers_by_name: dict[str, list[Organization]] = defaultdict(list)
    customers_by_id: dict[int, Organization] = {}
    for chunk in _chunks(sorted(names)):
        for org in db.session.scalars(select(Organization).where(
                Organization.kind == "customer", func.lower(Organization.name).in_(chunk))):
            customers_by_name[org.name.lower()].append(org)
    for chunk in _chunks(sorted(ids)):
        for org in db.session.scalars(select(Organization).where(
                Organization.kind == "customer", Organization.id.in_(chunk))):
            customers_by_id[org.id] = org
    partners_by_name: dict[str, list[Organization]] = defaultdict(list)
    for org in db.session.scalars(select(Organization).where(Organization.kind.in_(PARTNER_KINDS))):
        partners_by_name[org.name.lower()].append(org)
    products = {p.sku.lower(): p for p in db.session.scalars(select(Product))}
    edges = set(db.session.execute(select(ChannelRelationship.supplier_id, ChannelRelationship.buyer_id)).all())
    producer_id = db.session.scalar(select(Organization.id).where(Organization.kind == "producer"))
    known: set[str] = set()
    for chunk in _chunks(sorted(refs)):
        known.update(db.session.scalars(select(Entitlement.order_ref).where(Entitlement.order_ref.in_(chunk))))
    return Lookups(customers_by_name, customers_by_id, partners_by_name, products, edges, producer_id, known)


def _read_rows(data: bytes, plan: ImportPlan) -> list[tuple[int, dict[str, str]]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        plan.error(1, None, "The file is not UTF-8 text; save it as CSV (UTF-8).")
        return []
    if "\x00" in text:
        plan.error(1, None, "The file holds NUL characters: it is not a CSV file.")
        return []
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader)
    except StopIteration:
        plan.error(1, None, "The file is empty; the first line names the columns.")
        return []
    except csv.Error as error:
        plan.error(1, None, f"The first line is not CSV: {error}.")
        return []
    header = [h.strip().lower() for h in header]
    unknown = [h for h in header if h not in COLUMNS]
    missing = [c for c in REQUIRED if c not in header]
    duplicated = sorted({h for h in header if header.count(h) > 1})
    if unknown:
        plan.error(1, None, f"Unknown column{'s' if len(unknown) > 1 else ''}: {', '.join(unknown[:10])}. "
                            f"The columns are: {', '.join(COLUMNS)}.")
    if missing:
        plan.error(1, None, f"Missing column{'s' if len(missing) > 1 else ''}: {', '.join(missing)}.")
    if duplicated:
        plan.error(1, None, f"Column named twice: {', '.join(duplicated)}.")
    if unknown or missing or duplicated:
        return []
    rows: list[tuple[int, dict[str, str]]] = []
    line = 1
    try:
        for values in reader:
            line = reader.line_num
            if not any(v.strip() for v in values):
                continue  # a blank line
            if len(rows) >= MAX_ROWS:
                plan.error(line, None, f"A file holds at most {MAX_ROWS:,} rows; split it.")
                return []
            if len(values) != len(header):
                plan.error(line, None, f"This row has {len(values)} values for {len(header)} columns.")
                continue
            rows.append((line, {h: v.strip() for h, v in zip(header, values, strict=True)}))
    except csv.Error as error:
        plan.error(reader.line_num or line, None, f"This line is not valid CSV: {error}.")
        return []
    return rows


# --- checking -----------------------------------------------------------------------------


def _one(matches: list[Organization], what: str, name: str) -> tuple[Organization | None, str | None]:
    if not matches:
        return None, f"No {what} is called “{name}”."
    if len(matches) > 1:
        return None, f"{len(matches)} {what}s are called “{name}”; name the customer as #id."
    return matches[0], None


def _check_row(plan: ImportPlan, lk: Lookups, line: int, row: dict[str, str]):
    """(order-level values, PlannedLine) of a valid row, or None after recording its errors."""
    errors_before = plan.error_count

    def bad(column, message):
        plan.error(line, column, message)

    for column, value in row.items():
        if CONTROL_CHARACTERS_BUT_LINES.search(value) or (column != "notes" and ("\n" in value or "\r" in value)):
            bad(column, "Remove control characters and line breaks.")
    if plan.error_count > errors_before:
        return None
    limits = {"customer": 200, "order_ref": 100, "sales_chain": 2000, "notes": 2000, "sku": 64}
    for column, limit in limits.items():
        if len(row.get(column, "")) > limit:
            bad(column, f"At most {limit} characters.")
    fulfilment = (row.get("fulfilment") or "drop_ship").lower().replace("-", "_")
    if fulfilment not in ("drop_ship", "stocking"):
        bad("fulfilment", "Write drop_ship or stocking.")
    # The sales chain: partners by exact name, along channel edges from the producer down.
    chain: list[Organization] = []
    raw_chain = row.get("sales_chain", "")
    names = [n.strip() for n in raw_chain.split(CHAIN_SEPARATOR.strip())] if raw_chain else []
    for name in names:
        partner, problem = _one(lk.partners_by_name.get(name.lower(), []), "partner", name) if name else (
            None, "An empty name in the sales chain.")
        if problem:
            bad("sales_chain", problem)
        elif partner.status != "active":
            bad("sales_chain", f"{partner.name} is not an active partner.")
        else:
            chain.append(partner)
    if len(chain) == len(names) and chain:
        if len({p.id for p in chain}) != len(chain):
            bad("sales_chain", "A partner appears twice in the sales chain.")
        else:
            supplier_id, supplier_name = lk.producer_id, "the producer"
            for partner in chain:
                if (supplier_id, partner.id) not in lk.edges:
                    bad("sales_chain", f"{partner.name} is not supplied by {supplier_name}; "
                                       "the chain must follow the channel.")
                    break
                supplier_id, supplier_name = partner.id, partner.name
    # The owner: a customer (drop-ship) or the seller's stock.
    owner = None
    customer = row.get("customer", "")
    if fulfilment == "stocking":
        if customer:
            bad("customer", "Leave the customer empty for stock: the seller holds it.")
        elif not names:
            bad("sales_chain", "Stock needs a sales chain: its last partner holds it.")
        elif len(chain) == len(names):
            owner = chain[-1]
            if not owner.stocking:
                bad("fulfilment", f"{owner.name} is not a stocking partner.")
    elif not customer:
        bad("customer", "Name the customer (its exact name, or #id).")
    else:
        if customer.startswith("#") and customer[1:].isdigit() and len(customer) < 11:
            owner = lk.customers_by_id.get(int(customer[1:]))
            problem = None if owner else f"No customer has the id {customer}."
        else:
            owner, problem = _one(lk.customers_by_name.get(customer.lower(), []), "customer", customer)
        if problem:
            bad("customer", problem)
        elif owner.status != "active":
            bad("customer", f"{owner.name} is not active.")
    # The line.
    product = lk.products.get(row.get("sku", "").lower())
    if not row.get("sku"):
        bad("sku", "Enter the product's SKU.")
    elif product is None:
        bad("sku", f"No product has the SKU “{row['sku']}”.")
    model = row.get("license_model", "").lower()
    if model not in LICENSE_MODELS:
        bad("license_model", "Write perpetual, subscription or usage.")
    quantity = None
    raw = row.get("quantity", "").replace(",", "").replace("_", "")
    if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) <= INTEGER_MAX:
        bad("quantity", "A whole number above zero.")
    else:
        quantity = int(raw)
    dates: dict[str, date | None] = {}
    for column in ("purchase_date", "start_date", "end_date", "maintenance_end"):
        value = row.get(column, "")
        dates[column] = None
        if value:
            try:
                dates[column] = _parse_date(value)
            except ValueError:
                bad(column, f"“{value[:20]}” is not a date; write YYYY-MM-DD.")
    start, end = dates["start_date"], dates["end_date"]
    if model == "subscription" and not (row.get("start_date") and row.get("end_date")):
        bad("end_date", "A subscription needs a start_date and an end_date.")
    if start and end and end < start:
        bad("end_date", "The end date comes before the start date.")
    period = (row.get("usage_period") or ("month" if model == "usage" else "")).lower()
    if model == "usage" and period not in ("month", "year"):
        bad("usage_period", "Write month or year.")
    if plan.error_count > errors_before:
        return None
    order = (owner, dates["purchase_date"] or utcnow().date(), chain, fulfilment, row.get("notes") or None)
    signature = tuple(row.get(c, "") for c in ORDER_COLUMNS)
    planned = PlannedLine(line, product, model, quantity, start, end, dates["maintenance_end"],
                          period if model == "usage" else None)
    return order, signature, planned


def validate_orders(data: bytes) -> ImportPlan:
    """Check a CSV file of orders row by row; nothing is written."""
    plan = ImportPlan(sha256=sha256_of(data))
    rows = _read_rows(data, plan)
    plan.rows = len(rows)
    if not rows:
        if plan.error_count == 0:
            plan.error(2, None, "The file has no rows below its header.")
        return plan
    lookups = _load_lookups([row for _, row in rows])
    by_ref: dict[str, PlannedOrder] = {}
    for line, row in rows:
        checked = _check_row(plan, lookups, line, row)
        ref = row.get("order_ref") or None
        if ref is not None and ref in lookups.known_refs:
            plan.error(line, "order_ref", f"The order {ref} is on record already (imported before?).")
            continue
        if checked is None:
            if ref is not None:
                by_ref.setdefault(ref, None)  # its other rows still get checked, the order is lost anyway
            continue
        (owner, purchase_date, chain, fulfilment, notes), signature, planned = checked
        if ref is not None and ref in by_ref:
            order = by_ref[ref]
            if order is None:
                continue
            if order.signature != signature:
                different = [c for c, a, b in zip(ORDER_COLUMNS, order.signature, signature, strict=True) if a != b]
                plan.error(line, different[0], f"Rows of order {ref} disagree on {', '.join(different)}: "
                                               f"write them as on line {order.line}.")
                continue
            order.lines.append(planned)
            continue
        order = PlannedOrder(line, owner, ref, purchase_date, chain, fulfilment, notes, [planned], signature)
        plan.orders.append(order)
        if ref is not None:
            by_ref[ref] = order
    return plan


# --- writing ------------------------------------------------------------------------------


def commit_orders(actor: Actor, plan: ImportPlan) -> list[int]:
    """Write a valid plan in the caller's transaction with bulk inserts; returns the new ids.

    The derived read models (customers each partner serves, row counts, what each partner sold)
    are brought up to date in the same transaction, from the new entitlements only.
    """
    if not can(actor, "import_orders"):
        raise NotAllowed("Only producer staff import orders.")
    if not plan.ok:
        raise ServiceError("Correct the errors in the file first; nothing was imported.")
    session = db.session
    connection = session.connection()
    now = utcnow()
    user_id = actor.user.id if actor.user else None
    codes = [entitlement_code() for _ in plan.orders]
    entitlement_rows = [
        {"code": code, "owner_id": o.owner.id, "fulfilment": o.fulfilment, "order_ref": o.order_ref,
         "purchase_date": o.purchase_date, "status": "active", "notes": o.notes, "created_at": now}
        for code, o in zip(codes, plan.orders, strict=True)]
    table = Entitlement.__table__
    ids_by_code: dict[str, int] = {}
    for chunk in _chunks(entitlement_rows, 2000):
        for new_id, code in connection.execute(insert(table).returning(table.c.id, table.c.code), chunk):
            ids_by_code[code] = new_id
    ids = [ids_by_code[code] for code in codes]
    lines, links, attachments, events = [], [], [], []
    for entitlement_id, code, order in zip(ids, codes, plan.orders, strict=True):
        for spec in order.lines:
            lines.append({"entitlement_id": entitlement_id, "product_id": spec.product.id,
                          "license_model": spec.license_model, "quantity": spec.quantity,
                          "start_date": spec.start_date, "end_date": spec.end_date,
                          "maintenance_end": spec.maintenance_end, "usage_period": spec.usage_period,
                          "activation_code": activation_code()})
        for position, partner in enumerate(order.chain):
            links.append({"entitlement_id": entitlement_id, "position": position, "partner_id": partner.id})
            seller = position == len(order.chain) - 1
            attachments.append({"entitlement_id": entitlement_id, "partner_id": partner.id,
                                "relation": "sold" if seller else "distributed", "can_view": True,
                                "can_download": seller, "can_activate": seller, "active": True,
                                "granted_by_id": user_id, "granted_at": now})
        events.append({"at": now, "user_id": user_id, "org_id": actor.org.id, "on_behalf_of_org_id": None,
                       "action": "entitlement.create", "subject_type": "entitlement",
                       "subject_id": str(entitlement_id), "subject_org_id": order.owner.id,
                       "details": {"code": code, "owner": order.owner.name, "fulfilment": order.fulfilment,
                                   "sales_chain": [p.name for p in order.chain], "import": plan.sha256,
                                   "lines": [{"sku": s.product.sku, "model": s.license_model,
                                              "quantity": s.quantity} for s in order.lines]},
                       "request_id": actor.request_id, "client_addr": actor.client_addr})
    for model, rows in ((EntitlementLine, lines), (SalesChainLink, links), (Attachment, attachments),
                        (AuditEvent, events)):
        for chunk in _chunks(rows, 5000):
            connection.execute(insert(model.__table__), chunk)
    # Read models the ORM hooks keep for ORM changes: these inserts bypass them.
    served, names = served_pairs(connection, ids)
    apply_served_delta(connection, dict(served), names)
    add_to_row_counts(connection, {"entitlement": len(ids)})
    add_channel_sales(connection, ids)
    refresh_sales(connection, ids)
    record(actor, "import.commit", ImportedFile(plan.sha256), subject_org=actor.org,
           details={"sha256": plan.sha256, "rows": plan.rows, "entitlements": len(ids),
                    "lines": len(lines)})
    return ids


@dataclass
class ImportedFile:
    """The audit subject of an import: the file, by its SHA-256."""

    id: str
    __tablename__ = "import"


# --- the upload store ---------------------------------------------------------------------


def upload_dir(instance_path: str) -> Path:
    path = Path(instance_path) / "imports"
    path.mkdir(parents=True, exist_ok=True)
    return path


def store_upload(instance_path: str, data: bytes) -> str:
    """Keep an uploaded file under the instance folder by its SHA-256; returns the hash."""
    digest = sha256_of(data)
    target = upload_dir(instance_path) / f"{digest}.csv"
    if not target.exists():
        partial = target.with_suffix(".part")
        partial.write_bytes(data)
        partial.replace(target)
    return digest


def load_upload(instance_path: str, digest: str) -> bytes | None:
    """The stored upload with this hash (checked again), or None."""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        return None
    path = upload_dir(instance_path) / f"{digest}.csv"
    if not path.is_file():
        return None
    data = path.read_bytes()
    return data if sha256_of(data) == digest else None
