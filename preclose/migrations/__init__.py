"""preclose's Alembic migrations, shipped with the package and run by `preclose.db.migrate`."""
