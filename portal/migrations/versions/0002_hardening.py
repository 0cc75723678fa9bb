"""Hardening: organization path form, one pending request per subject, and what the
policy and outbox fixes need.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 21:30:00

"""
from alembic import op
import sqlalchemy as sa

# The path form as in portal.models.orgs.PATH_FORM at this revision (spelt out: a migration
# must not change when the models do).
_DIGITS_REMOVED = "path"
for _digit in "0123456789":
    _DIGITS_REMOVED = f"replace({_DIGITS_REMOVED}, '{_digit}', '')"
PATH_FORM = (
    "path LIKE '/%/' AND path NOT LIKE '%//%' "
    f"AND replace({_DIGITS_REMOVED}, '/', '') = '' "
    "AND path LIKE ('%/' || CAST(id AS VARCHAR(20)) || '/')"
)

PENDING = {
    "join_org": ["requester_user_id", "target_org_id"],
    "partner_access": ["requester_org_id", "target_org_id"],
    "transfer": ["entitlement_id"],
    "partner_application": ["requester_user_id"],
}


revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('organization', schema=None) as batch_op:
        batch_op.create_check_constraint('path_form', sa.text(PATH_FORM))
    with op.batch_alter_table('portal_request', schema=None) as batch_op:
        for kind, columns in PENDING.items():
            where = sa.text(f"state = 'pending' AND kind = '{kind}'")
            batch_op.create_index(f'uq_portal_request_pending_{kind}', columns, unique=True,
                                  sqlite_where=where, postgresql_where=where)


def downgrade():
    with op.batch_alter_table('portal_request', schema=None) as batch_op:
        for kind in PENDING:
            batch_op.drop_index(f'uq_portal_request_pending_{kind}')
    with op.batch_alter_table('organization', schema=None) as batch_op:
        batch_op.drop_constraint('ck_organization_path_form', type_='check')
