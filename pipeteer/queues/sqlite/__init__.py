"""The SQLite backend (`sqlite:///path/queues.db`, the embedded default): every queue a table of one file.

One module a job: `store` (the file: connections, tables, transactions, a full disk said, the wait
for another process's commit), `claims` (which process reads which row), `queue` (`SqliteQueue`),
`deadletters` (the table of a queue's dead letters), `catalog` (the schemas table), `review` (the
console's task locks and ledger), `blobrefs` (the blobs the file references, for `blobs gc`) and
`backend` (`SqliteBackend`: what a `sqlite:` URL makes).
"""

from pipeteer.queues.sqlite.backend import SqliteBackend
from pipeteer.queues.sqlite.catalog import SqliteCatalog
from pipeteer.queues.sqlite.queue import SqliteQueue
from pipeteer.queues.sqlite.review import SqliteLedger, SqliteLocks
from pipeteer.queues.sqlite.store import SqliteStore

__all__ = ["SqliteBackend", "SqliteCatalog", "SqliteLedger", "SqliteLocks", "SqliteQueue", "SqliteStore"]
