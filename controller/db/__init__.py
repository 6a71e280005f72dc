"""Database access: SQLAlchemy models, sessions, migrations and service grants."""
