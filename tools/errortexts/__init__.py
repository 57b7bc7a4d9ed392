"""Real PostgreSQL error texts, as Cloud Run would log them, for the guard's fake cloud.

The guard's log classifier must tell a failed migration and a schema mismatch from the
ordinary errors of a busy database. Guessed error strings would test the classifier against
the author's imagination; this package produces them instead from the real drivers
(psycopg 3, psycopg2, asyncpg, SQLAlchemy, Alembic, Django) against a real PostgreSQL, run
by a real app's code, and labels each one from what it actually did. See docs/error-texts.md.
"""
