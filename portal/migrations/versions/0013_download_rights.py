"""Performance: what a partner may download, from a few index entries per product.

``policy.download_rights`` aggregated every line of every entitlement a partner may download:
for the reseller attached to 12,602 of 200,000 entitlements (PostgreSQL) it read both tables
whole, 15,000 buffers a request. A partner attached to that many now walks, per catalog
product, its lines of one license model in the order of a date and stops at the first line of
an entitlement it may download (``ix_entitlement_line_product_term``: by end date, for
subscription and pay-per-use lines; ``ix_entitlement_line_product_maintenance``: by maintenance
end, for perpetual lines); the first also serves every question by product alone, so the
product_id index of 0001 goes. "May this partner download from this entitlement?" is one probe
of ``ix_attachment_partner_download`` (its live attachments with the download permission, and
only those), which also lists them for a partner attached to few.

Revision ID: 0013_download_rights
Revises: 0012_line_product
Create Date: 2026-12-01 17:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0013_download_rights'
down_revision = '0012_line_product'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_entitlement_line_product_term', 'entitlement_line',
                    ['product_id', 'license_model', 'end_date', 'start_date', 'entitlement_id'], unique=False)
    op.create_index('ix_entitlement_line_product_maintenance', 'entitlement_line',
                    ['product_id', 'license_model', 'maintenance_end', 'entitlement_id'], unique=False)
    op.drop_index('ix_entitlement_line_product_id', table_name='entitlement_line')
    op.create_index('ix_attachment_partner_download', 'attachment', ['partner_id', 'entitlement_id'], unique=False,
                    sqlite_where=sa.text('active = 1 AND can_view = 1 AND can_download = 1'),
                    postgresql_where=sa.text('active AND can_view AND can_download'))


def downgrade():
    op.drop_index('ix_attachment_partner_download', table_name='attachment')
    op.create_index('ix_entitlement_line_product_id', 'entitlement_line', ['product_id'], unique=False)
    op.drop_index('ix_entitlement_line_product_maintenance', table_name='entitlement_line')
    op.drop_index('ix_entitlement_line_product_term', table_name='entitlement_line')
