"""Persistence: SQLAlchemy 2 (async) over SQLite by default or PostgreSQL, with Alembic."""

from bot.store.conversations import ConversationNotFound, SqlConversationStore
from bot.store.engine import DatabaseConfigError, create_engine, migrate

__all__ = [
    "ConversationNotFound",
    "DatabaseConfigError",
    "SqlConversationStore",
    "create_engine",
    "migrate",
]
