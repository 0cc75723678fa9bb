"""Performance (issue 7): drop ix_attachment_partner_scope, which no query uses.

ix_attachment_partner_visible (partner_id, active, can_view, entitlement_id) starts with the same
columns and answers every question the other one did (the planner chose it over the other even
when both existed); the live attachment of one partner to one entitlement is found through
uq_attachment_active. One index less to write with every attachment.

Revision ID: 0005_perf
Revises: 0004
Create Date: 2026-12-01 02:45:00

"""
from alembic import op

revision = '0005_perf'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    op.drop_index('ix_attachment_partner_scope', table_name='attachment')


def downgrade():
    op.create_index('ix_attachment_partner_scope', 'attachment', ['partner_id', 'active', 'entitlement_id'],
                    unique=False)
