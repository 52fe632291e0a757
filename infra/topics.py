"""Create the pipeline's Kafka topics and verify them, portable across Kafka, Redpanda and Tansu.

Only CreateTopics and Metadata are used: Tansu supports neither CreatePartitions nor
AlterConfigs, so a topic with the wrong partition count is reported, never "fixed".
``kafka_admin`` is the bounded admin client every broker check uses.
"""

from __future__ import annotations

import time

from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError


def kafka_admin(bootstrap: str, timeout_ms: int = 5000, **kwargs: object) -> KafkaAdminClient:
    """A KafkaAdminClient whose bootstrap is bounded by ``timeout_ms`` on kafka-python 2.x/3.x.

    3.x waits up to ``bootstrap_timeout_ms`` (default 30 s) for a broker; 2.x has no such key
    and rejects unknown keys, so it is passed only when supported.
    """
    cfg: dict[str, object] = {"request_timeout_ms": timeout_ms, **kwargs}
    if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:
        cfg["bootstrap_timeout_ms"] = timeout_ms
    return KafkaAdminClient(bootstrap_servers=bootstrap, **cfg)


class TopicError(RuntimeError):
    """A topic could not be created, or exists with a layout we cannot use."""


def _topic_name(meta: dict) -> str:
    # kafka-python 3.x says "name", 2.x says "topic".
    return meta.get("name") or meta.get("topic") or ""


def describe_partitions(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Partition count per existing topic among ``names`` (missing topics are left out)."""
    out: dict[str, int] = {}
    for meta in admin.describe_topics(names):
        if meta.get("error_code", 0) == 0 and meta.get("partitions"):
            out[_topic_name(meta)] = len(meta["partitions"])
    return out


def ensure_topics(
    bootstrap: str,
    names: list[str],
    partitions: int,
    replication: int,
    timeout_s: float = 15.0,
) -> dict[str, int]:
    """Create the missing topics among ``names`` and verify every one has ``partitions``.

    Idempotent: existing topics with the right partition count are left alone and a
    concurrent creator (TopicAlreadyExists) is tolerated. Returns {topic: partitions}.
    Raises :class:`TopicError` if a topic exists with another partition count (the broker
    may not support adding partitions, and shrinking is impossible anywhere) or if the
    topics are not visible in metadata within ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    try:
        admin = kafka_admin(
            bootstrap,
            timeout_ms=int(max(1.0, min(timeout_s, 10.0)) * 1000),
            client_id="gridpulse-topics",
        )
    except KafkaError as exc:
        raise TopicError(f"cannot reach the broker at {bootstrap}: {exc!r}") from exc
    try:
        existing = set(admin.list_topics())
        for name in names:
            if name in existing:
                continue
            try:
                # One request per topic: a concurrent creator of one topic must not
                # hide the result for the others.
                admin.create_topics(
                    [
                        NewTopic(
                            name=name, num_partitions=partitions, replication_factor=replication
                        )
                    ],
                    timeout_ms=int(timeout_s * 1000),
                )
            except TopicAlreadyExistsError:
                pass
            except KafkaError as exc:
                raise TopicError(f"creating topic {name!r} on {bootstrap} failed: {exc!r}") from exc

        while True:
            found = describe_partitions(admin, names)
            wrong = {n: c for n, c in found.items() if c != partitions}
            if wrong:
                detail = ", ".join(f"{n} has {c}" for n, c in sorted(wrong.items()))
                raise TopicError(
                    f"topics exist with a different partition count than the {partitions} "
                    f"requested ({detail}). The broker cannot change this in place (Tansu does "
                    "not support CreatePartitions): delete the topics, or set "
                    "GRIDPULSE_TOPICS__PARTITIONS to the existing count."
                )
            missing = [n for n in names if n not in found]
            if not missing:
                return found
            if time.monotonic() > deadline:
                raise TopicError(
                    f"topics not visible in metadata on {bootstrap} after {timeout_s:.0f} s: "
                    f"{missing}"
                )
            time.sleep(0.1)
    finally:
        admin.close()
