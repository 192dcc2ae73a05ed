"""Alembic's entry point, run programmatically by ``node.db.upgrade``.

The caller hands over an open connection (``config.attributes["connection"]``) so the
migrations run inside its transaction; without one (the ``alembic`` command, for writing a
new revision) the URL comes from the ``sqlalchemy.url`` option. Offline mode prints the SQL
for a DBA who applies it by hand.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from node.db import create_engine, metadata
from node.errors import ConfigError

config = context.config


def run_on(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()
elif isinstance(given := config.attributes.get("connection"), Connection):
    run_on(given)
else:
    url = config.get_main_option("sqlalchemy.url")
    if url is None:
        raise ConfigError("migrations: no connection given and no sqlalchemy.url set")
    engine = create_engine(url)
    with engine.begin() as connection:
        run_on(connection)
    engine.dispose()
