"""pipeteer: queue-based orchestration of data-first workflows that include people.

>>> from pipeteer import Pipeline, Workflow, connect
"""

from pipeteer.codec import AvroDecimal
from pipeteer.errors import (
    BlobError,
    CodecError,
    ConfigError,
    DecodeError,
    InexistentItem,
    PipeteerError,
    QueueError,
    RoutingError,
    SchemaError,
    SpecError,
    StageError,
    ValueTypeError,
)
from pipeteer.queues.base import Queue, ReadQueue, WriteQueue
from pipeteer.runtime.app import App
from pipeteer.runtime.connect import connect
from pipeteer.spec import Pipeline, Workflow, Wrapped
from pipeteer.wiring import PipelineQueues, QueueKV, WorkflowQueues, make_queues

__all__ = [
    "App",
    "AvroDecimal",
    "BlobError",
    "CodecError",
    "ConfigError",
    "DecodeError",
    "InexistentItem",
    "Pipeline",
    "PipelineQueues",
    "PipeteerError",
    "Queue",
    "QueueError",
    "QueueKV",
    "ReadQueue",
    "RoutingError",
    "SchemaError",
    "SpecError",
    "StageError",
    "ValueTypeError",
    "Workflow",
    "WorkflowQueues",
    "Wrapped",
    "WriteQueue",
    "connect",
    "make_queues",
]
