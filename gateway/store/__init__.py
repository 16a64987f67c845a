"""The registry's tables and the database connection they live on (SQLite by default, PostgreSQL by URL)."""
