"""Alembic migrations of ntorque's schema (shipped as ntorque.migrations)."""
