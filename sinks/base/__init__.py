"""The sink contract (modelled on Quix Streams' ``sinks/base``).

A checkpoint is what one consumer batch covers: for each topic-partition, the offsets read.
The sink writes a checkpoint to every table, each insert atomic, and only then may the
consumer commit. Each table keeps its own *ledger*: how far, per topic-partition, its rows
already go, read back from the store itself. Redelivered offsets below the ledger are
dropped before insert, so at-least-once delivery still gives exact tables. When the store
is down the sink retries with backoff and never returns, which pauses the consumer.

``store`` names what a pipeline needs of a store (``Store``: backend, state reads) and how
it asks for a table's layout by role; ``sinks.clickhouse`` implements it.
"""

from sinks.base.ledger import Ledger, LedgerKind, keep_after, span_rows
from sinks.base.sink import BatchSink, Checkpoint, RetryPolicy, SinkBackend, SinkStopped
from sinks.base.store import (
    CaseLogEntry,
    QueryRefused,
    StateReader,
    Store,
    StoreBackend,
    StoreLayout,
)
from sinks.base.table import SinkTable, TableLayout

__all__ = [
    "BatchSink",
    "CaseLogEntry",
    "Checkpoint",
    "Ledger",
    "LedgerKind",
    "QueryRefused",
    "RetryPolicy",
    "SinkBackend",
    "SinkStopped",
    "SinkTable",
    "StateReader",
    "Store",
    "StoreBackend",
    "StoreLayout",
    "TableLayout",
    "keep_after",
    "span_rows",
]
