"""The daemon's state: protocols in base.py, one module (or package) per backend.

``open_store`` opens the backend ``[state] backend`` names; the per-user maps are built by
their owners (daemon/runtime.py) for the same backend.
"""

from __future__ import annotations

from pathlib import Path

from daemon.config import InboxConfig, StateConfig
from daemon.state.base import Store
from daemon.state.memory import MemoryStore
from daemon.state.sqlite import SqliteStore

FILE_NAME = "wa-agentd.sqlite3"


async def open_store(state: StateConfig, inbox: InboxConfig, directory: Path) -> Store:
    """The inbox, journal and sessions of ``[state] backend``, ready to serve."""
    if state.backend == "memory":
        return MemoryStore(dedupe_ttl=inbox.dedupe_ttl, max_ids=inbox.dedupe_max_ids)
    return await SqliteStore.open(
        directory / FILE_NAME, dedupe_ttl=inbox.dedupe_ttl, max_ids=inbox.dedupe_max_ids
    )
