"""Batching mechanics of the agents: consumer records to pipeline messages, batches cut into
checkpoints by size, and the two-stage prepare/store loop over ``noack_take`` batches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import faust

from streams.pipeline import Message

P = TypeVar("P")


def to_messages(events: list[Any]) -> list[Message]:
    """What the pipeline needs of Faust events: source position, record time, bytes."""
    return [
        Message(
            e.message.topic,
            e.message.partition,
            e.message.offset,
            e.message.timestamp,
            e.message.value,
        )
        for e in events
    ]


def chunk_by_bytes(msgs: list[Message], max_bytes: int) -> list[list[Message]]:
    """Consecutive chunks of at most ``max_bytes`` of payload (at least one message each):
    a batch of large sensor envelopes becomes several checkpoints written in order, so the
    rows held in memory at once stay bounded while small messages keep large batches."""
    chunks: list[list[Message]] = [[]]
    size = 0
    for m in msgs:
        n = len(m.value or b"")
        if chunks[-1] and size + n > max_bytes:
            chunks.append([])
            size = 0
        chunks[-1].append(m)
        size += n
    return chunks if chunks[0] else []


async def pipelined(
    stream: faust.StreamT,
    batch_max: int,
    within: float,
    prepare: Callable[[list[Any]], AsyncIterator[P]],
    store: Callable[[P], Awaitable[None]],
    ack: Callable[[list[Any]], Awaitable[None]],
) -> None:
    """Two stages over ``noack_take`` batches: ``prepare`` turns a batch into checkpoints
    (CPU work), ``store`` writes one checkpoint (I/O), ``ack`` releases a batch's offsets.

    Done in line, each cycle would add up take window, CPU work and every ClickHouse round
    trip, and Faust's take buffer does not fill while the agent holds a batch. Here a
    checkpoint is prepared while the previous one is being stored, and the agent goes back
    to taking as soon as the last checkpoint of a batch is handed to the store. Stores run
    one at a time in checkpoint order and a batch is acked only after its last store, so the
    sinks' ledgers see checkpoints in sequence and no offset is committed ahead of its data;
    at most one checkpoint is being stored while the next is prepared. A failing store
    (e.g. ``SinkStopped``) surfaces at the next checkpoint or at the end; its events stay
    unacked and are redelivered. Backpressure is unchanged: while a store retries, the agent
    waits for it before preparing more, so Faust's buffer fills and pauses fetching."""
    pending: asyncio.Future[None] | None = None
    try:
        async for events in stream.noack_take(batch_max, within=within):
            batch = list(events)
            async for part in prepare(batch):
                if pending is not None:
                    await pending
                pending = asyncio.ensure_future(store(part))
            pending = asyncio.ensure_future(_then(pending, ack, batch))
        if pending is not None:
            await pending
    finally:
        if pending is not None and not pending.done():
            pending.cancel()


async def _then(
    first: Awaitable[None] | None, then: Callable[[list[Any]], Awaitable[None]], batch: list[Any]
) -> None:
    if first is not None:
        await first
    await then(batch)
