"""The customer inbox: read state per user and message; the customer's audit trail by organization and time.

Revision ID: 0004
Revises: 0002 (0003 is written on another branch: point this at it when both are merged)
Create Date: 2026-11-30 23:00:00

"""
from alembic import op
import sqlalchemy as sa

import portal.models.base

revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('notification_read',
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('message_id', sa.Integer(), nullable=False),
    sa.Column('read_at', portal.models.base.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['message_id'], ['notification_message.id'], name=op.f('fk_notification_read_message_id_notification_message'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['user_account.id'], name=op.f('fk_notification_read_user_id_user_account'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('user_id', 'message_id', name=op.f('pk_notification_read'))
    )
    op.create_index(op.f('ix_notification_read_message_id'), 'notification_read', ['message_id'], unique=False)
    # Plain CREATE INDEX: the audit table's append-only triggers stay as they are.
    op.create_index('ix_audit_event_subject_org_at', 'audit_event', ['subject_org_id', 'at'], unique=False)


def downgrade():
    op.drop_index('ix_audit_event_subject_org_at', table_name='audit_event')
    op.drop_index(op.f('ix_notification_read_message_id'), table_name='notification_read')
    op.drop_table('notification_read')
