"""Performance (issue 7): the producer's pages at producer scale.

- ``ix_entitlement_line_ending`` (end date, license model, entitlement) replaces the end date's
  own index, and ``ix_entitlement_not_active`` lists the few entitlements that are not active:
  the overview's "subscriptions ending in 90 days" reads both indexes instead of probing every
  entitlement of the range.

Revision ID: 0014_producer_pages
Revises: 0013_download_rights
Create Date: 2026-12-01 23:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '0014_producer_pages'
down_revision = '0013_download_rights'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index('ix_entitlement_line_ending', 'entitlement_line', ['end_date', 'license_model', 'entitlement_id'],
                    unique=False)
    op.drop_index('ix_entitlement_line_end_date', table_name='entitlement_line')
    op.create_index('ix_entitlement_not_active', 'entitlement', ['id'], unique=False,
                    sqlite_where=sa.text("status <> 'active'"), postgresql_where=sa.text("status <> 'active'"))


def downgrade():
    op.drop_index('ix_entitlement_not_active', table_name='entitlement')
    op.create_index('ix_entitlement_line_end_date', 'entitlement_line', ['end_date'], unique=False)
    op.drop_index('ix_entitlement_line_ending', table_name='entitlement_line')
