"""Persistence: SQLAlchemy 2 Core on SQLite (default) or PostgreSQL, migrated by Alembic."""
