"""The Pegasus backend's Alembic environment: online migrations, URL from DATABASE_URL.

Each revision script executes one of the team's `backend/migrations/*.sql` files, so the
SQL is the same whichever tool applies it.
"""

import os
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine

config = context.config
if config.config_file_name is not None:
    fileConfig(config.config_file_name)


def run_migrations_online() -> None:
    engine = create_engine(os.environ["DATABASE_URL"])
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=None)
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
