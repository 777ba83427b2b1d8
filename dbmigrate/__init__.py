"""dbmigrate: copy an MLflow tracking + model-registry database between PostgreSQL, MySQL/MariaDB,
SQLite and MongoDB, keeping every id, timestamp and value, and verify the copy."""

__version__ = "0.1.0"
