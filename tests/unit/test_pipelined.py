"""The agents' two-stage loop: checkpoints prepared while the previous one is stored, stores
one at a time in order, each batch acked only after its last store, errors surface."""

import asyncio

import pytest

from streams.batching import pipelined


class FakeStream:
    """What ``pipelined`` uses of a Faust stream: ``noack_take`` batches."""

    def __init__(self, batches, gap_s=0.0):
        self.batches = batches
        self.gap_s = gap_s
        self.taken_while_storing = 0
        self.storing = False

    async def noack_take(self, max_, within):
        for b in self.batches:
            await asyncio.sleep(self.gap_s)
            if self.storing:
                self.taken_while_storing += 1
            yield b


class Recorder:
    """prepare/store/ack that log what happened, in what order, and what overlapped."""

    def __init__(self, stream, store_s=0.03, fail_on=None):
        self.stream = stream
        self.store_s = store_s
        self.fail_on = fail_on
        self.log: list[tuple] = []
        self.running = 0
        self.prepared_while_storing = 0

    async def prepare(self, batch):
        for item in batch:  # one checkpoint per item
            await asyncio.sleep(0)
            if self.stream.storing:
                self.prepared_while_storing += 1
            self.log.append(("prepared", item))
            yield item

    async def store(self, item):
        self.running += 1
        assert self.running == 1  # never two stores at once
        self.stream.storing = True
        await asyncio.sleep(self.store_s)
        self.stream.storing = False
        self.running -= 1
        if item == self.fail_on:
            raise Stop("store down")
        self.log.append(("stored", item))

    async def ack(self, batch):
        assert self.running == 0
        self.log.append(("acked", tuple(batch)))


class Stop(Exception):
    pass


def test_stores_run_one_at_a_time_in_order_and_batches_are_acked_after_their_last_store():
    stream = FakeStream([[1], [2, 3], [4], [5]], gap_s=0.01)
    rec = Recorder(stream)
    asyncio.run(pipelined(stream, 10, 0.1, rec.prepare, rec.store, rec.ack))
    stored = [e[1] for e in rec.log if e[0] == "stored"]
    assert stored == [1, 2, 3, 4, 5]  # every checkpoint, in order, the last one awaited
    acks = [e for e in rec.log if e[0] == "acked"]
    assert acks == [("acked", (1,)), ("acked", (2, 3)), ("acked", (4,)), ("acked", (5,))]
    for batch in ((1,), (2, 3), (4,), (5,)):  # an ack follows every store of its batch
        at = rec.log.index(("acked", batch))
        assert all(rec.log.index(("stored", i)) < at for i in batch)
    assert stream.taken_while_storing >= 2  # taking overlapped storing
    assert rec.prepared_while_storing >= 1  # preparing (checkpoint 3) overlapped storing 2


def test_a_failing_store_stops_the_loop_and_nothing_after_it_is_stored_or_acked():
    stream = FakeStream([[1], [2], [3], [4]])
    rec = Recorder(stream, store_s=0, fail_on=2)
    with pytest.raises(Stop):
        asyncio.run(pipelined(stream, 10, 0.1, rec.prepare, rec.store, rec.ack))
    assert [e for e in rec.log if e[0] != "prepared"] == [("stored", 1), ("acked", (1,))]


def test_a_failing_store_mid_batch_leaves_the_whole_batch_unacked():
    stream = FakeStream([[1, 2, 3]])
    rec = Recorder(stream, store_s=0, fail_on=2)
    with pytest.raises(Stop):
        asyncio.run(pipelined(stream, 10, 0.1, rec.prepare, rec.store, rec.ack))
    assert ("stored", 1) in rec.log
    assert not [e for e in rec.log if e[0] == "acked"]  # checkpoint 1 stored, batch not acked


def test_cancelling_the_agent_cancels_the_store_in_flight():
    finished = []

    async def main():
        stream = FakeStream([[1]])
        gate = asyncio.Event()

        async def prepare(batch):
            for item in batch:
                yield item

        async def store(item):
            gate.set()
            await asyncio.sleep(10)
            finished.append(item)

        async def ack(batch):
            finished.append(("acked", batch))

        task = asyncio.ensure_future(pipelined(stream, 10, 0.1, prepare, store, ack))
        await gate.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)

    asyncio.run(main())
    assert finished == []
