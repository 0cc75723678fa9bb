"""Performance (issue 7): the partner report from a read model of what each partner sold.

``/partner/reports`` aggregated, per request, every entitlement the partner sees whose sales
chain names it, with its lines and a correlated sum of activations per line, four times: for
the reseller attached to 12,602 of 200,000 entitlements, 350-470 ms on PostgreSQL and 442-582 ms
on SQLite. ``partner_sales`` holds one row per (partner, entitlement) in the partner's figures
(purchase month, the tier below, owner, seats sold and activated) and ``partner_sales_end`` the
subscription end dates of the active ones; the report reads one index range of the partner's
rows per figure. Both are filled here from the tables, then kept in the same transaction as
every change by the ORM's flush hooks (``portal.models.sales``).

Revision ID: 0016_partner_sales
Revises: 0015_producer_pages
Create Date: 2026-12-02 10:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0016_partner_sales'
down_revision = '0015_producer_pages'
branch_labels = None
depends_on = None

_SALES = """
INSERT INTO partner_sales (partner_id, entitlement_id, month, below_id, owner_id, owner_customer, seats, activated)
SELECT link.partner_id, link.entitlement_id, {month}, below.partner_id, entitlement.owner_id,
       owner.kind = 'customer', COALESCE(seats.n, 0), COALESCE(used.n, 0)
FROM sales_chain_link AS link
JOIN entitlement ON entitlement.id = link.entitlement_id
JOIN organization AS owner ON owner.id = entitlement.owner_id
LEFT JOIN sales_chain_link AS below
       ON below.entitlement_id = link.entitlement_id AND below.position = link.position + 1
LEFT JOIN (SELECT entitlement_id,
                  sum(CASE WHEN license_model IN ('perpetual', 'subscription') THEN quantity ELSE 0 END) AS n
           FROM entitlement_line GROUP BY entitlement_id) AS seats ON seats.entitlement_id = link.entitlement_id
LEFT JOIN (SELECT entitlement_line.entitlement_id, sum(activation.seats) AS n
           FROM activation JOIN entitlement_line ON entitlement_line.id = activation.line_id
           WHERE activation.active GROUP BY entitlement_line.entitlement_id) AS used
       ON used.entitlement_id = link.entitlement_id
WHERE entitlement.owner_id <> link.partner_id
  AND EXISTS (SELECT 1 FROM attachment
              WHERE attachment.entitlement_id = link.entitlement_id AND attachment.partner_id = link.partner_id
                AND attachment.active AND attachment.can_view)
ORDER BY link.partner_id, link.entitlement_id
"""

_ENDS = """
INSERT INTO partner_sales_end (partner_id, end_date, entitlement_id, owner_id)
SELECT DISTINCT sale.partner_id, line.end_date, sale.entitlement_id, sale.owner_id
FROM partner_sales AS sale
JOIN entitlement ON entitlement.id = sale.entitlement_id
JOIN entitlement_line AS line ON line.entitlement_id = sale.entitlement_id
WHERE entitlement.status = 'active' AND line.license_model = 'subscription' AND line.end_date IS NOT NULL
ORDER BY sale.partner_id, line.end_date, sale.entitlement_id
"""


def upgrade():
    op.create_table('partner_sales',
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('entitlement_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('below_id', sa.Integer(), nullable=True),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.Column('owner_customer', sa.Boolean(), nullable=False),
    sa.Column('seats', sa.Integer(), nullable=False),
    sa.Column('activated', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['entitlement_id'], ['entitlement.id'],
                            name=op.f('fk_partner_sales_entitlement_id_entitlement'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['partner_id'], ['organization.id'], name=op.f('fk_partner_sales_partner_id_organization')),
    sa.PrimaryKeyConstraint('partner_id', 'entitlement_id', name=op.f('pk_partner_sales'))
    )
    with op.batch_alter_table('partner_sales', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_partner_sales_entitlement_id'), ['entitlement_id'], unique=False)
        batch_op.create_index('ix_partner_sales_month', ['partner_id', 'month', 'below_id', 'owner_id',
                                                         'owner_customer', 'seats', 'activated'], unique=False)

    op.create_table('partner_sales_end',
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=False),
    sa.Column('entitlement_id', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['entitlement_id'], ['entitlement.id'],
                            name=op.f('fk_partner_sales_end_entitlement_id_entitlement'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['partner_id'], ['organization.id'],
                            name=op.f('fk_partner_sales_end_partner_id_organization')),
    sa.PrimaryKeyConstraint('partner_id', 'end_date', 'entitlement_id', name=op.f('pk_partner_sales_end'))
    )
    with op.batch_alter_table('partner_sales_end', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_partner_sales_end_entitlement_id'), ['entitlement_id'], unique=False)

    # What the installation's tables say today (in the order of the primary keys: SQLite writes
    # them a third faster than in the join's order).
    postgresql = op.get_bind().dialect.name == 'postgresql'
    month = ("CAST(date_trunc('month', entitlement.purchase_date) AS DATE)" if postgresql
             else "date(entitlement.purchase_date, 'start of month')")
    op.execute(_SALES.format(month=month))
    op.execute(_ENDS)


def downgrade():
    with op.batch_alter_table('partner_sales_end', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_partner_sales_end_entitlement_id'))
    op.drop_table('partner_sales_end')
    with op.batch_alter_table('partner_sales', schema=None) as batch_op:
        batch_op.drop_index('ix_partner_sales_month')
        batch_op.drop_index(batch_op.f('ix_partner_sales_entitlement_id'))
    op.drop_table('partner_sales')
