"""Fixtures for pipeline tests: isolated pipelines on the session's real services."""

from __future__ import annotations

import pytest

from gridpulse.feeds import topic_map
from tests.integration.harness import PipelineEnv, Sent, ends_of


def publish_recorded(penv: PipelineEnv, emissions, speed=None) -> tuple[list[Sent], dict]:
    """Publish and record where every message landed; returns (sent, end offsets)."""
    from sources.publish import publish

    sent: list[Sent] = []

    def on_sent(topic, partition, offset, emission):
        sent.append(Sent(topic, partition, offset, emission))

    topics = {
        k: v.replace("gridpulse.", f"{penv.prefix}.", 1) for k, v in topic_map_default().items()
    }
    publish(list(emissions), topics, penv.bootstrap, speed=speed, max_rate=None, on_sent=on_sent)
    return sent, ends_of(sent)


def topic_map_default() -> dict[str, str]:
    from core.settings import Settings

    return topic_map(Settings())


@pytest.fixture
def pipeline_dir(tmp_path):
    return tmp_path / "pipeline"
