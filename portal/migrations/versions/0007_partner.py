"""The partner's customer search reads the names on each customer's hierarchy path.

Revision ID: 0007_partner
Revises: 0005_perf
Create Date: 2026-12-01 02:40:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0007_partner'
down_revision = '0005_perf'
branch_labels = None
depends_on = None


def _fill(texts):
    bind = op.get_bind()
    ids = [row[0] for row in bind.execute(sa.text("SELECT DISTINCT customer_id FROM partner_customer")).all()]
    for customer_id, text in texts(bind, ids).items():
        bind.execute(sa.text("UPDATE partner_customer SET search_name = :text WHERE customer_id = :id"),
                     {"text": text, "id": customer_id})


def _path_names(bind, ids):
    paths = dict(bind.execute(sa.text("SELECT id, path FROM organization WHERE kind = 'customer'")).all())
    names = dict(bind.execute(sa.text("SELECT id, name FROM organization WHERE kind = 'customer'")).all())
    out = {}
    for customer_id in ids:
        chain = [int(p) for p in paths.get(customer_id, "").strip("/").split("/") if p]
        out[customer_id] = " > ".join(names.get(i, "") for i in chain).lower()[:1000]
    return out


def _own_names(bind, ids):
    names = dict(bind.execute(sa.text("SELECT id, name FROM organization WHERE kind = 'customer'")).all())
    return {customer_id: names.get(customer_id, "").lower()[:200] for customer_id in ids}


def upgrade():
    with op.batch_alter_table('partner_customer', schema=None) as batch_op:
        batch_op.alter_column('search_name', existing_type=sa.String(length=200), type_=sa.String(length=1000),
                              existing_nullable=False)
    _fill(_path_names)


def downgrade():
    _fill(_own_names)
    with op.batch_alter_table('partner_customer', schema=None) as batch_op:
        batch_op.alter_column('search_name', existing_type=sa.String(length=1000), type_=sa.String(length=200),
                              existing_nullable=False)
