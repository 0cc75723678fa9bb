"""Performance: an entitlement's lines indexed with their product.

"Has this entitlement a line of that product?" (who a notification concerns, the product
filters) had two single-column indexes to choose from. SQLite, which gathers no statistics by
itself, chose the product's and read every line of the product for each entitlement: sending a
notification on a 200,000-entitlement SQLite database ran for minutes. With (entitlement_id,
product_id) both columns match one index, which SQLite takes whatever its statistics; every
lookup by entitlement still uses it.

Revision ID: 0012_line_product
Revises: 0011_partner_page
Create Date: 2026-12-01 12:05:00

"""
from alembic import op

revision = '0012_line_product'
down_revision = '0011_partner_page'
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index('ix_entitlement_line_entitlement_id', table_name='entitlement_line')
    op.create_index('ix_entitlement_line_entitlement_id', 'entitlement_line', ['entitlement_id', 'product_id'],
                    unique=False)


def downgrade():
    op.drop_index('ix_entitlement_line_entitlement_id', table_name='entitlement_line')
    op.create_index('ix_entitlement_line_entitlement_id', 'entitlement_line', ['entitlement_id'], unique=False)
