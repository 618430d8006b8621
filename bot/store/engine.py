"""Engine creation and migrations. A broken database URL is a start-up error, never a
silent fallback to memory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class DatabaseConfigError(Exception):
    """The configured database URL cannot be used."""


def create_engine(url: str, *, echo: bool = False) -> AsyncEngine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise DatabaseConfigError(f"database.url is not a valid SQLAlchemy URL: {url!r}") from exc
    if parsed.drivername not in ("sqlite+aiosqlite", "postgresql+asyncpg"):
        raise DatabaseConfigError(
            f"database.url uses driver {parsed.drivername!r}; supported: "
            "sqlite+aiosqlite:///path/to.db or postgresql+asyncpg://user:pass@host/db"
        )
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.drivername.startswith("sqlite"):
        db = parsed.database
        if not db or db == ":memory:":
            raise DatabaseConfigError("database.url must name a SQLite file, not memory")
        Path(db).parent.mkdir(parents=True, exist_ok=True)
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs.update(pool_size=10, max_overflow=10, pool_pre_ping=True)
    try:
        engine = create_async_engine(parsed, **kwargs)
    except NoSuchModuleError as exc:
        raise DatabaseConfigError(f"database driver not installed for {parsed.drivername}") from exc
    if parsed.drivername.startswith("sqlite"):
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _alembic_config(connection: Connection) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = connection
    return cfg


async def migrate(engine: AsyncEngine, revision: str = "head") -> None:
    """Bring the schema to ``revision`` (Alembic, sharing our connection)."""
    async with engine.begin() as conn:
        await conn.run_sync(lambda c: command.upgrade(_alembic_config(c), revision))


async def current_revision(engine: AsyncEngine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    async with engine.connect() as conn:
        return await conn.run_sync(lambda c: MigrationContext.configure(c).get_current_revision())


def head_revision() -> str:
    """The newest migration shipped with this version of the code."""
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    head = ScriptDirectory.from_config(cfg).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head
