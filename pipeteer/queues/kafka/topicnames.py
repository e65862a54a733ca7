"""The Kafka names of one workflow: topics, consumer groups, transactional ids."""

from __future__ import annotations

from collections.abc import Sequence

from pipeteer.spec import names


class TopicNames:
    """Every Kafka name of one workflow, derived by `pipeteer.spec.names` (never invented here)."""

    def __init__(self, workflow: str, prefix: str) -> None:
        self.workflow, self.prefix = workflow, prefix

    def queue(self, path: Sequence[str]) -> str:
        return names.queue_topic(self.workflow, path, self.prefix)

    def changelog(self, stage: Sequence[str]) -> str:
        return names.changelog_topic(self.workflow, stage, self.prefix)

    def dead_letters(self, stage: Sequence[str]) -> str:
        return names.dead_letter_topic(self.workflow, stage, self.prefix)

    def group(self, stage: Sequence[str]) -> str:
        return names.consumer_group(self.workflow, stage, self.prefix)

    def transactional_id(self, stage: Sequence[str], instance: str) -> str:
        return names.transactional_id(self.workflow, stage, instance, self.prefix)
