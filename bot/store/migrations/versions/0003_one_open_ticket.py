"""at most one open ticket per conversation

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from bot.store.schema import OPEN_TICKET_SQL

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "uq_tickets_open_conversation",
        "tickets",
        ["conversation_id"],
        unique=True,
        sqlite_where=sa.text(OPEN_TICKET_SQL),
        postgresql_where=sa.text(OPEN_TICKET_SQL),
    )


def downgrade() -> None:
    op.drop_index("uq_tickets_open_conversation", table_name="tickets")
