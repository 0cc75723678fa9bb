"""Performance at producer scale (issue 7): the customers-served read model, row counts for
the producer's overview, and an index that answers what a partner sees from the index alone.

``partner_customer`` holds, per partner and customer, how many of the customer's
entitlements the partner sees through an active attachment with view rights (and the
customer's name, for one partner's customers in name order); the partner portal reads it
instead of scanning every attachment of the partner. It is filled here from the
attachments, then kept up to date in the same flush as every ORM change to an attachment,
an entitlement's owner or a customer's name (``portal.models.entitlements``). ``row_count``
holds the number of entitlements and of organizations of each kind, kept the same way.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 21:48:20

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('partner_customer',
    sa.Column('partner_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('customer_name', sa.String(length=200), nullable=False),
    sa.Column('search_name', sa.String(length=200), nullable=False),
    sa.Column('entitlements', sa.Integer(), nullable=False),
    sa.CheckConstraint('entitlements > 0', name=op.f('ck_partner_customer_entitlements_positive')),
    sa.ForeignKeyConstraint(['customer_id'], ['organization.id'], name=op.f('fk_partner_customer_customer_id_organization')),
    sa.ForeignKeyConstraint(['partner_id'], ['organization.id'], name=op.f('fk_partner_customer_partner_id_organization')),
    sa.PrimaryKeyConstraint('partner_id', 'customer_id', name=op.f('pk_partner_customer'))
    )
    with op.batch_alter_table('partner_customer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_partner_customer_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_partner_customer_by_name', ['partner_id', 'customer_name', 'customer_id', 'search_name'], unique=False)

    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.create_index('ix_attachment_partner_visible', ['partner_id', 'active', 'can_view', 'entitlement_id'], unique=False)

    # What the installation's attachments say today (names lower-cased as the app does it).
    rows = op.get_bind().execute(sa.text(
        "SELECT attachment.partner_id, entitlement.owner_id, organization.name, count(*) "
        "FROM attachment JOIN entitlement ON entitlement.id = attachment.entitlement_id "
        "JOIN organization ON organization.id = entitlement.owner_id "
        "WHERE attachment.active AND attachment.can_view AND organization.kind = 'customer' "
        "GROUP BY attachment.partner_id, entitlement.owner_id, organization.name"
    )).all()
    table = sa.table('partner_customer', sa.column('partner_id'), sa.column('customer_id'),
                     sa.column('customer_name'), sa.column('search_name'), sa.column('entitlements'))
    if rows:
        op.bulk_insert(table, [
            {'partner_id': partner_id, 'customer_id': customer_id, 'customer_name': name,
             'search_name': name.lower(), 'entitlements': count}
            for partner_id, customer_id, name, count in rows
        ])


    op.create_table('row_count',
    sa.Column('name', sa.String(length=50), nullable=False),
    sa.Column('value', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_row_count'))
    )
    op.execute("INSERT INTO row_count (name, value) SELECT 'entitlement', count(*) FROM entitlement")
    op.execute("INSERT INTO row_count (name, value) SELECT 'organization.' || kind, count(*) FROM organization "
               "GROUP BY kind")


def downgrade():
    op.drop_table('row_count')

    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.drop_index('ix_attachment_partner_visible')

    with op.batch_alter_table('partner_customer', schema=None) as batch_op:
        batch_op.drop_index('ix_partner_customer_by_name')
        batch_op.drop_index(batch_op.f('ix_partner_customer_customer_id'))

    op.drop_table('partner_customer')
