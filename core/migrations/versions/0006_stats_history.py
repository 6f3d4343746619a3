"""per-minute service statistics (the status page's charts)

Revision ID: 0006
Revises: 0005
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'stats_history',
        sa.Column('node', sa.String(length=128), nullable=False),
        sa.Column('minute', sa.BigInteger(), nullable=False),
        sa.Column('series', sa.String(length=32), nullable=False),
        sa.Column('value', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('node', 'minute', 'series'),
    )
    with op.batch_alter_table('stats_history', schema=None) as batch_op:
        batch_op.create_index('ix_stats_history_minute', ['minute'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('stats_history', schema=None) as batch_op:
        batch_op.drop_index('ix_stats_history_minute')
    op.drop_table('stats_history')
