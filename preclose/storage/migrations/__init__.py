"""preclose's Alembic migrations, shipped with the package, run by `preclose.storage.db.migrate`."""
