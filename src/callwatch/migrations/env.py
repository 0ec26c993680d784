"""Alembic environment: the URL comes from the caller (callwatch migrate) or Settings."""

from alembic import context

from callwatch.db import make_engine
from callwatch.settings import Settings
from callwatch.tables import Base

url = context.config.attributes.get("url") or Settings().database_url


def run() -> None:
    engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=Base.metadata, render_as_batch=True
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()
    engine.dispose()


run()
