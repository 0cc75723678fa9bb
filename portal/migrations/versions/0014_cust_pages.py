"""Performance (issue 7): a partner's home panels from a few index entries.

"Subscriptions ending soon" counted a partner's entitlements with a subscription line ending in
the next 90 days from the end_date index of 0001: each of the 8,300 lines ending in that window
(whoever's they are) was read from the table to learn its license model and entitlement, in
parallel workers, 25 ms for the reseller attached to 12,602 of 200,000 entitlements
(PostgreSQL). Indexed by license model, end date and entitlement, the window is one range read
from the index alone, each entry tested against the partner's attachments (hashed once) before
the entitlement of the few hundred that pass is read; the end_date index goes (every question by
end date names the license model).

"Customers I serve" sorted all of a partner's customers by their number of entitlements to show
five (6,014 rows for that reseller); ``ix_partner_customer_by_size`` has them in that order.

Revision ID: 0014_cust_pages
Revises: 0013_download_rights
Create Date: 2026-12-01 23:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0014_cust_pages'
down_revision = '0013_download_rights'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_entitlement_line_model_end', 'entitlement_line',
                    ['license_model', 'end_date', 'entitlement_id'], unique=False)
    op.drop_index('ix_entitlement_line_end_date', table_name='entitlement_line')
    op.create_index('ix_partner_customer_by_size', 'partner_customer',
                    ['partner_id', sa.text('entitlements DESC'), 'customer_name', 'customer_id'], unique=False)


def downgrade():
    op.drop_index('ix_partner_customer_by_size', table_name='partner_customer')
    op.create_index('ix_entitlement_line_end_date', 'entitlement_line', ['end_date'], unique=False)
    op.drop_index('ix_entitlement_line_model_end', table_name='entitlement_line')
