"""The SQLite backend (`sqlite:///path/queues.db`, the embedded default): every queue a table of one file."""

from pipeteer.queues.sqlite.catalog import SqliteCatalog
from pipeteer.queues.sqlite.queue import SqliteQueue, SqliteStore
from pipeteer.queues.sqlite.review import SqliteLedger, SqliteLocks

__all__ = ["SqliteCatalog", "SqliteLedger", "SqliteLocks", "SqliteQueue", "SqliteStore"]
