"""smtp outgoing queue

Revision ID: 0003
Revises: 0002
"""
from alembic import op
import sqlalchemy as sa


revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')


def upgrade() -> None:
    op.create_table(
        'smtp_queue',
        sa.Column('id', _ID, nullable=False),
        sa.Column('queue_id', sa.String(length=40), nullable=False),
        sa.Column('sender', sa.String(length=320), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('submitted_by', sa.String(length=320), nullable=False),
        sa.Column('client', sa.String(length=64), nullable=False),
        sa.Column('is_report', sa.Boolean(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('queue_id'),
    )
    op.create_table(
        'smtp_queue_recipients',
        sa.Column('id', _ID, nullable=False),
        sa.Column('message_id', _ID, nullable=False),
        sa.Column('address', sa.String(length=320), nullable=False),
        sa.Column('domain', sa.String(length=253), nullable=False),
        sa.Column('status', sa.String(length=16), nullable=False),
        sa.Column('attempts', sa.Integer(), nullable=False),
        sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('last_error', sa.Text(), nullable=False),
        sa.Column('delay_notified', sa.Boolean(), nullable=False),
        sa.Column('claimed_by', sa.String(length=128), nullable=False),
        sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['message_id'], ['smtp_queue.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id'),
    )
    with op.batch_alter_table('smtp_queue_recipients', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_smtp_queue_recipients_message_id'), ['message_id'], unique=False)
        batch_op.create_index('ix_smtp_rcpt_status_next', ['status', 'next_attempt_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('smtp_queue_recipients', schema=None) as batch_op:
        batch_op.drop_index('ix_smtp_rcpt_status_next')
        batch_op.drop_index(batch_op.f('ix_smtp_queue_recipients_message_id'))
    op.drop_table('smtp_queue_recipients')
    op.drop_table('smtp_queue')
