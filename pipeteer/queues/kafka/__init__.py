"""The Kafka backend (`kafka://host:port`): topics keyed by item id, stages as exactly-once consumer-producers.

See `pending` for the exactly-once reasoning and `engine` for the transaction loop.
"""

from pipeteer.errors import CommitAborted
from pipeteer.plan import TopicNames
from pipeteer.queues.kafka.backend import KafkaBackend, KafkaQueue
from pipeteer.queues.kafka.config import KafkaConnection, KafkaSettings, Transactions
from pipeteer.queues.kafka.engine import StageEngine
from pipeteer.topics import Topics

__all__ = [
    "CommitAborted",
    "KafkaBackend",
    "KafkaConnection",
    "KafkaQueue",
    "KafkaSettings",
    "StageEngine",
    "TopicNames",
    "Topics",
    "Transactions",
]
