"""The catalog of producer staff: products, their releases (kind, date, notes in Markdown) and
release files (streamed to the instance folder with size and SHA-256; duplicates refused).

Thin views: form -> ``portal.services.catalog`` verb -> one commit. Every object comes from a
policy loader (``load_product``, ``load_release``, ``load_release_file``: 404 for anyone who
does not manage the catalog). For htmx, a release's forms answer with the release's block
(the new file listed, or the message next to the field with 422) and a toast; without
JavaScript a success redirects to the product's page and an error renders it with the message.
"""

from __future__ import annotations

from flask import abort, current_app, flash, make_response, redirect, render_template, request, url_for
from flask_wtf.file import FileField
from sqlalchemy import func, or_, select
from sqlalchemy.orm import selectinload
from wtforms import DateField, SelectField, StringField, TextAreaField
from wtforms.fields.choices import SelectChoice
from wtforms.validators import DataRequired, InputRequired, Length, Optional

from portal import policy
from portal.auth_session import current_actor
from portal.blueprints.producer import bp
from portal.extensions import db
from portal.forms import PortalForm
from portal.models import Product, Release
from portal.models.catalog import RELEASE_KINDS
from portal.services import catalog
from portal.services.errors import NotAllowed, ServiceError
from portal.ui import Column, Table, parse_list_args, push_url, toast
from portal.web import accepts_upload, is_htmx, render


def _strip(value):
    return value.strip() if isinstance(value, str) else value


class ProductForm(PortalForm):
    name = StringField("Name", filters=[_strip], validators=[
        DataRequired("Enter the product's name."), Length(max=200, message="Keep the name under 200 characters.")])
    sku = StringField("SKU", filters=[_strip], description="Letters, digits, dots, dashes or underscores; "
                      "unique.", validators=[DataRequired("Enter the SKU."),
                                             Length(max=64, message="Keep the SKU under 64 characters.")])
    description = TextAreaField("Description", filters=[_strip], validators=[
        Optional(), Length(max=5000, message="Keep the description under 5,000 characters.")])


class ReleaseForm(PortalForm):
    version = StringField("Version", filters=[_strip], description="Unique for the product, e.g. 5.1.1.",
                          validators=[DataRequired("Enter the version."),
                                      Length(max=50, message="Keep the version under 50 characters.")])
    released_on = DateField("Release date", validators=[InputRequired("Enter the release date (YYYY-MM-DD).")])
    kind = SelectField("Kind", choices=[SelectChoice(k, catalog.KIND_LABELS[k]) for k in RELEASE_KINDS],
                       default="release", validate_choice=False)
    notes = TextAreaField("Notes", description="Markdown: **bold**, lists, links. Shown to customers.",
                          validators=[Optional(), Length(max=20_000, message="Keep the notes under 20,000 "
                                                                             "characters.")])

    def validate_released_on(self, field):
        if field.errors:
            field.errors = ["Enter the release date (YYYY-MM-DD)."]


class UploadForm(PortalForm):
    file = FileField("File")


class DeleteForm(PortalForm):
    pass


def _require_catalog(actor) -> None:
    if not policy.can(actor, policy.Action.MANAGE_CATALOG):
        abort(404)


def _show_error(form, error: ServiceError) -> None:
    target = getattr(form, error.field, None) if error.field else None
    if target is None or not hasattr(target, "errors"):
        form.form_errors.append(error.message)
    else:
        target.errors = [*target.errors, error.message]


# --- the products list ------------------------------------------------------------------------

COLUMNS = [
    Column("name", "Product", sortable=True),
    Column("sku", "SKU", sortable=True),
    Column("releases", "Releases", numeric=True),
    Column("latest", "Latest release"),
]
SORTS = {"name": (Product.name, Product.id), "sku": (Product.sku,)}


def _products_table(actor):
    state = parse_list_args(request.args, endpoint="producer.products", sorts=SORTS, default_sort="name")
    query = policy.catalog_products(actor)
    if state.q:
        pattern = f"%{state.q.lower()}%"
        query = query.where(or_(func.lower(Product.name).like(pattern), func.lower(Product.sku).like(pattern)))
    order = [c.desc() if state.descending else c for c in SORTS[state.sort]]
    pagination = db.paginate(query.order_by(*order, Product.id), page=state.page,
                             per_page=current_app.config["PAGE_SIZE"], error_out=False)
    ids = [p.id for p in pagination.items]
    facts = {}
    if ids:  # releases and the latest one, per product of this page, in one query
        latest = func.max(Release.released_on)
        facts = {row[0]: (row[1], row[2]) for row in db.session.execute(
            select(Release.product_id, func.count(Release.id), latest).where(Release.product_id.in_(ids))
            .group_by(Release.product_id))}
    table = Table(id="products", columns=COLUMNS, pagination=pagination, state=state, noun="product",
                  nouns="products", caption="Products of the catalog",
                  empty_text="Add the first product with the form below.")
    return table, facts


@bp.get("/products")
def products():
    actor = current_actor()
    _require_catalog(actor)
    table, facts = _products_table(actor)
    response = render("producer/products.html", fragment="producer/_products_table.html", table=table,
                      facts=facts, form=ProductForm(prefix="product", formdata=None))
    return push_url(response, table.state)


@bp.post("/products")
def create_product():
    actor = current_actor()
    _require_catalog(actor)
    form = ProductForm(prefix="product")
    if form.validate():
        try:
            product = catalog.create_product(actor, name=form.name.data, sku=form.sku.data,
                                             description=form.description.data)
        except NotAllowed as error:
            db.session.rollback()
            abort(403, error.message)
        except ServiceError as error:
            db.session.rollback()
            _show_error(form, error)
        else:
            db.session.commit()
            flash(f"Added {product.name} ({product.sku}).")
            target = url_for("producer.product", product_id=product.id)
            if is_htmx():
                response = make_response("", 204)
                response.headers["HX-Redirect"] = target
                return response
            return redirect(target)
    if is_htmx():
        return make_response(render_template("producer/_product_form.html", form=form), 422)
    table, facts = _products_table(actor)
    return render("producer/products.html", table=table, facts=facts, form=form, status=422)


# --- one product: its releases and files --------------------------------------------------------


def _product_page(actor, product: Product, *, product_form=None, release_form=None, uploads=None, status=200):
    releases = db.session.scalars(
        select(Release).where(Release.product_id == product.id).options(selectinload(Release.files))
        .order_by(Release.released_on.desc(), Release.id.desc())).all()
    return render("producer/product.html", product=product, releases=releases,
                  product_form=product_form or ProductForm(prefix="product", obj=product, formdata=None),
                  release_form=release_form or ReleaseForm(prefix="release", formdata=None),
                  uploads=uploads or {}, kind_labels=catalog.KIND_LABELS, status=status)


@bp.get("/products/<int:product_id>")
def product(product_id: int):
    actor = current_actor()
    return _product_page(actor, policy.load_product(actor, product_id))


@bp.post("/products/<int:product_id>")
def edit_product(product_id: int):
    actor = current_actor()
    product = policy.load_product(actor, product_id)
    form = ProductForm(prefix="product")
    if form.validate():
        try:
            catalog.edit_product(actor, product, name=form.name.data, sku=form.sku.data,
                                 description=form.description.data)
        except ServiceError as error:
            db.session.rollback()
            _show_error(form, error)
        else:
            db.session.commit()
            flash(f"Saved {product.name}.")
            return redirect(url_for("producer.product", product_id=product.id))
    db.session.rollback()
    product = policy.load_product(actor, product_id)
    return _product_page(actor, product, product_form=form, status=422)


@bp.post("/products/<int:product_id>/releases")
def add_release(product_id: int):
    actor = current_actor()
    product = policy.load_product(actor, product_id)
    form = ReleaseForm(prefix="release")
    if form.validate():
        try:
            release = catalog.add_release(actor, product, version=form.version.data, released_on=form.released_on.data,
                                          kind=form.kind.data, notes=form.notes.data)
        except ServiceError as error:
            db.session.rollback()
            _show_error(form, error)
        else:
            db.session.commit()
            flash(f"Added {product.name} {release.version}. Upload its files below.")
            return redirect(url_for("producer.product", product_id=product.id) + f"#release-{release.id}")
    return _product_page(actor, product, release_form=form, status=422)


def _release_answer(release: Release, *, upload=None, status=200, message=None, kind="success"):
    """For htmx: the release's block, as the page shows it."""
    db.session.refresh(release)
    response = make_response(render_template(
        "producer/_release.html", release=release, upload=upload or UploadForm(prefix=f"upload-{release.id}",
                                                                              formdata=None),
        kind_labels=catalog.KIND_LABELS, product=release.product), status)
    response.vary.add("HX-Request")
    return toast(response, message, kind) if message else response


@bp.post("/releases/<int:release_id>/files")
@accepts_upload
def upload_file(release_id: int):
    actor = current_actor()
    release = policy.load_release(actor, release_id)
    form = UploadForm(prefix=f"upload-{release.id}")
    storage = form.file.data if form.validate() else None
    if form.validate() and (storage is None or not getattr(storage, "filename", "")):
        form.file.errors = ["Choose a file to upload."]
    elif storage is not None:
        try:
            stored = catalog.add_release_file(actor, release, storage.filename, storage.stream)
        except ServiceError as error:
            db.session.rollback()
            _show_error(form, error)
        else:
            db.session.commit()
            message = f"Uploaded {stored.name} ({stored.size:,} bytes) to {release.version}."
            if is_htmx():
                return _release_answer(release, message=message)
            flash(message)
            return redirect(url_for("producer.product", product_id=release.product_id) + f"#release-{release.id}")
    if is_htmx():
        return _release_answer(release, upload=form, status=422)
    return _product_page(actor, release.product, uploads={release.id: form}, status=422)


@bp.post("/files/<int:file_id>/delete")
def delete_file(file_id: int):
    actor = current_actor()
    release_file = policy.load_release_file(actor, file_id)
    release, name = release_file.release, release_file.name
    DeleteForm().validate()
    catalog.delete_release_file(actor, release_file)
    db.session.commit()
    message = f"Deleted {name} from {release.version}."
    if is_htmx():
        return _release_answer(release, message=message)
    flash(message)
    return redirect(url_for("producer.product", product_id=release.product_id) + f"#release-{release.id}")

