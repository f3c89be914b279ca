"""The SQLite backend (one host): store.py, its schema and connection (schema.py), its SQL
(queries.py)."""

from daemon.state.sqlite.schema import SCHEMA_VERSION as SCHEMA_VERSION
from daemon.state.sqlite.store import SqliteStore as SqliteStore
