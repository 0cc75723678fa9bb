"""Performance (issue 7): the producer's pages at producer scale.

- The channel's sales per partner, tier and month (``channel_month``, ``tier_month``), the
  customers each partner and tier sold to with their latest purchase (``channel_customer``) and
  the subscription lines each sold by end date (``channel_ending``): ``/producer/reports``
  aggregated every chain link of its window with their entitlements' lines and activations
  (108,000 links for twelve months at 200,000 entitlements, 0.6 s) and reads these instead; a
  partner's page sums its seats sold from them. Filled here from the tables, then kept in the
  same transaction as every change by the ORM's flush hooks (``portal.models.channel``).
- ``ix_entitlement_not_active`` lists the few entitlements that are not active: the overview's
  "subscriptions ending in 90 days" reads it and the lines' ``ix_entitlement_line_model_end``
  (0014) instead of probing every entitlement of the range.
- ``ix_organization_kind_name``: the customer directory's default order (57,000 customers by
  name) is an index range instead of a sort of every customer.

Revision ID: 0015_producer_pages
Revises: 0014_cust_pages
Create Date: 2026-12-01 23:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0015_producer_pages'
down_revision = '0014_cust_pages'
branch_labels = None
depends_on = None


def _fill(dialect: str) -> list[str]:
    """The read model from the tables (a copy of ``portal.models.channel.rebuild_statements``)."""
    month = ("CAST(date_trunc('month', e.purchase_date) AS DATE)" if dialect == "postgresql"
             else "date(e.purchase_date, 'start of month')")
    seats = ("LEFT JOIN (SELECT entitlement_id, sum(quantity) AS n FROM entitlement_line "
             "WHERE license_model IN ('perpetual', 'subscription') GROUP BY entitlement_id) AS s "
             "ON s.entitlement_id = e.id")
    used = ("LEFT JOIN (SELECT li.entitlement_id, sum(a.seats) AS n FROM activation AS a "
            "JOIN entitlement_line AS li ON li.id = a.line_id "
            "WHERE a.active AND li.license_model IN ('perpetual', 'subscription') GROUP BY li.entitlement_id) AS u "
            "ON u.entitlement_id = e.id")
    linked = "sales_chain_link AS l JOIN entitlement AS e ON e.id = l.entitlement_id"
    kinds = f"{linked} JOIN organization AS p ON p.id = l.partner_id"
    direct = ("entitlement AS e WHERE NOT EXISTS (SELECT 1 FROM sales_chain_link AS l WHERE l.entitlement_id = e.id) "
              "AND EXISTS (SELECT 1 FROM entitlement_line AS li WHERE li.entitlement_id = e.id)")
    customer = "JOIN organization AS o ON o.id = e.owner_id AND o.kind = 'customer'"
    ending = ("JOIN entitlement_line AS li ON li.entitlement_id = e.id AND li.license_model = 'subscription' "
              "AND li.end_date IS NOT NULL WHERE e.status = 'active'")
    return [template.format(month=month, seats=seats, used=used, linked=linked, kinds=kinds, direct=direct,
                            customer=customer, ending=ending) for template in _FILL]


# The statements, with the parts above in braces.
_FILL = [
    "INSERT INTO channel_month (partner_id, month, entitlements, seats, activated) "
    "SELECT l.partner_id, {month}, count(DISTINCT e.id), sum(COALESCE(s.n, 0)), sum(COALESCE(u.n, 0)) "
    "FROM {linked} {seats} {used} GROUP BY l.partner_id, {month}",
    "INSERT INTO tier_month (tier, month, entitlements, seats) "
    "SELECT p.kind, {month}, count(DISTINCT e.id), sum(COALESCE(s.n, 0)) FROM {kinds} {seats} "
    "GROUP BY p.kind, {month}",
    "INSERT INTO tier_month (tier, month, entitlements, seats) "
    "SELECT 'direct', {month}, count(*), sum(COALESCE(s.n, 0)) FROM entitlement AS e {seats} "
    "WHERE e.id IN (SELECT e.id FROM {direct}) GROUP BY {month}",
    "INSERT INTO channel_customer (group_key, customer_id, entitlements, last_purchase) "
    "SELECT CAST(l.partner_id AS VARCHAR(20)), e.owner_id, count(DISTINCT e.id), max(e.purchase_date) "
    "FROM {linked} {customer} GROUP BY l.partner_id, e.owner_id",
    "INSERT INTO channel_customer (group_key, customer_id, entitlements, last_purchase) "
    "SELECT p.kind, e.owner_id, count(DISTINCT e.id), max(e.purchase_date) FROM {kinds} {customer} "
    "GROUP BY p.kind, e.owner_id",
    "INSERT INTO channel_customer (group_key, customer_id, entitlements, last_purchase) "
    "SELECT 'direct', e.owner_id, count(*), max(e.purchase_date) FROM entitlement AS e {customer} "
    "WHERE e.id IN (SELECT e.id FROM {direct}) GROUP BY e.owner_id",
    "INSERT INTO channel_ending (group_key, end_date, lines) "
    "SELECT CAST(l.partner_id AS VARCHAR(20)), li.end_date, count(DISTINCT li.id) FROM {linked} {ending} "
    "GROUP BY l.partner_id, li.end_date",
    "INSERT INTO channel_ending (group_key, end_date, lines) "
    "SELECT p.kind, li.end_date, count(DISTINCT li.id) FROM {kinds} {ending} GROUP BY p.kind, li.end_date",
]


def upgrade():
    op.create_table('channel_month',
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('entitlements', sa.Integer(), nullable=False),
    sa.Column('seats', sa.Integer(), nullable=False),
    sa.Column('activated', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['partner_id'], ['organization.id'], name=op.f('fk_channel_month_partner_id_organization')),
    sa.PrimaryKeyConstraint('partner_id', 'month', name=op.f('pk_channel_month'))
    )
    op.create_table('tier_month',
    sa.Column('tier', sa.String(length=20), nullable=False),
    sa.Column('month', sa.Date(), nullable=False),
    sa.Column('entitlements', sa.Integer(), nullable=False),
    sa.Column('seats', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('tier', 'month', name=op.f('pk_tier_month'))
    )
    op.create_table('channel_customer',
    sa.Column('group_key', sa.String(length=20), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('entitlements', sa.Integer(), nullable=False),
    sa.Column('last_purchase', sa.Date(), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['organization.id'],
                            name=op.f('fk_channel_customer_customer_id_organization')),
    sa.PrimaryKeyConstraint('group_key', 'customer_id', name=op.f('pk_channel_customer'))
    )
    op.create_table('channel_ending',
    sa.Column('group_key', sa.String(length=20), nullable=False),
    sa.Column('end_date', sa.Date(), nullable=False),
    sa.Column('lines', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('group_key', 'end_date', name=op.f('pk_channel_ending'))
    )
    for statement in _fill(op.get_bind().dialect.name):
        op.execute(statement)
    op.create_index('ix_channel_month_month', 'channel_month',
                    ['month', 'partner_id', 'entitlements', 'seats', 'activated'], unique=False)
    op.create_index('ix_channel_customer_last', 'channel_customer', ['group_key', 'last_purchase', 'customer_id'],
                    unique=False)
    op.create_index(op.f('ix_channel_customer_customer_id'), 'channel_customer', ['customer_id'], unique=False)
    op.create_index('ix_channel_ending_date', 'channel_ending', ['end_date', 'group_key', 'lines'], unique=False)
    op.create_index('ix_entitlement_not_active', 'entitlement', ['id'], unique=False,
                    sqlite_where=sa.text("status <> 'active'"), postgresql_where=sa.text("status <> 'active'"))
    op.create_index('ix_organization_kind_name', 'organization', ['kind', 'name', 'id'], unique=False)


def downgrade():
    op.drop_index('ix_organization_kind_name', table_name='organization')
    op.drop_index('ix_entitlement_not_active', table_name='entitlement')
    op.drop_table('channel_ending')
    op.drop_table('channel_customer')
    op.drop_table('tier_month')
    op.drop_table('channel_month')
