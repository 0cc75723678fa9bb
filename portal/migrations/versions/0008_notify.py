"""Notifications as a job: state and progress, acknowledgement and reminders, preferences per kind.

Revision ID: 0008_notify
Revises: 0007_partner
Create Date: 2026-12-01 02:11:12.307510

"""
from alembic import op
import sqlalchemy as sa

import portal.models.base


# revision identifiers, used by Alembic.
revision = '0008_notify'
down_revision = '0007_partner'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('notification_preference',
    sa.Column('org_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('email', sa.Boolean(), server_default=sa.text('(true)'), nullable=False),
    sa.Column('partner_copy', sa.Boolean(), server_default=sa.text('(false)'), nullable=False),
    sa.CheckConstraint("kind IN ('service_pack', 'security_patch', 'critical', 'end_of_life', 'general')", name=op.f('ck_notification_preference_kind')),
    sa.ForeignKeyConstraint(['org_id'], ['organization.id'], name=op.f('fk_notification_preference_org_id_organization'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('org_id', 'kind', name=op.f('pk_notification_preference'))
    )
    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state', sa.String(length=20), server_default='draft', nullable=False))
        batch_op.add_column(sa.Column('remind_after_days', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('remind_partners', sa.Boolean(), server_default=sa.text('(false)'), nullable=False))
        batch_op.add_column(sa.Column('cursor', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('organizations_total', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('organizations_done', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('emails_queued', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('queued_at', portal.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('stop_reason', sa.Text(), nullable=True))
        batch_op.create_index('ix_notification_state', ['state'], unique=False)
        batch_op.create_check_constraint(
            'state', sa.text("state IN ('draft', 'checking', 'queuing', 'sent', 'stopped')"))
        batch_op.create_check_constraint('remind_after_days', sa.text('remind_after_days IS NULL OR remind_after_days > 0'))

    with op.batch_alter_table('outbox_email', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notification_id', sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f('ix_outbox_email_notification_id'), ['notification_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_outbox_email_notification_id_notification'), 'notification',
                                    ['notification_id'], ['id'])

    with op.batch_alter_table('notification_message', schema=None) as batch_op:
        batch_op.add_column(sa.Column('acknowledged_at', portal.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('acknowledged_by_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('reminded_at', portal.models.base.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_notification_message_acknowledged_by_id_user_account'), 'user_account', ['acknowledged_by_id'], ['id'])



def downgrade():
    with op.batch_alter_table('outbox_email', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_outbox_email_notification_id_notification'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_outbox_email_notification_id'))
        batch_op.drop_column('notification_id')

    with op.batch_alter_table('notification_message', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_notification_message_acknowledged_by_id_user_account'), type_='foreignkey')
        batch_op.drop_column('reminded_at')
        batch_op.drop_column('acknowledged_by_id')
        batch_op.drop_column('acknowledged_at')

    with op.batch_alter_table('notification', schema=None) as batch_op:
        batch_op.drop_constraint('remind_after_days', type_='check')
        batch_op.drop_constraint('state', type_='check')
        batch_op.drop_index('ix_notification_state')
        batch_op.drop_column('stop_reason')
        batch_op.drop_column('queued_at')
        batch_op.drop_column('emails_queued')
        batch_op.drop_column('organizations_done')
        batch_op.drop_column('organizations_total')
        batch_op.drop_column('cursor')
        batch_op.drop_column('remind_partners')
        batch_op.drop_column('remind_after_days')
        batch_op.drop_column('state')

    op.drop_table('notification_preference')
