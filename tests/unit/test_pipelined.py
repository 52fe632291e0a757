"""The agents' store-while-taking loop: one body at a time, in batch order, errors surface."""

import asyncio

import pytest

from streams.app import pipelined


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


def test_bodies_run_one_at_a_time_in_order_while_the_next_batch_is_taken():
    stream = FakeStream([[1], [2, 3], [4], [5]], gap_s=0.01)
    done, running = [], []

    async def body(batch):
        running.append(1)
        assert len(running) == 1  # never two stores at once
        stream.storing = True
        await asyncio.sleep(0.03)
        stream.storing = False
        done.append(batch)
        running.pop()

    asyncio.run(pipelined(stream, 10, 0.1, body))
    assert done == [[1], [2, 3], [4], [5]]  # every batch, in order, the last one awaited
    assert stream.taken_while_storing >= 2  # taking overlapped storing


def test_a_failing_body_stops_the_loop_and_later_batches_are_not_stored():
    stream = FakeStream([[1], [2], [3], [4]])
    done = []

    class Stop(Exception):
        pass

    async def body(batch):
        await asyncio.sleep(0)
        if batch == [2]:
            raise Stop("store down")
        done.append(batch)

    with pytest.raises(Stop):
        asyncio.run(pipelined(stream, 10, 0.1, body))
    assert done == [[1]]  # nothing after the failed batch was stored (nor acked)


def test_cancelling_the_agent_cancels_the_store_in_flight():
    started, finished = asyncio.Event, []

    async def main():
        stream = FakeStream([[1]])
        gate = started()

        async def body(batch):
            gate.set()
            await asyncio.sleep(10)
            finished.append(batch)

        task = asyncio.ensure_future(pipelined(stream, 10, 0.1, body))
        await gate.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0)
        return stream

    asyncio.run(main())
    assert finished == []
