"""The output batcher of interactive jobs: an answer after a quiet spell goes out at once,
a flood costs at most one message per window."""

from __future__ import annotations

import asyncio

from execution_plane.output_batcher import OutputBatcher
from execution_plane.sandbox.contract import OutputStream


async def test_an_answer_after_a_quiet_spell_goes_out_at_once() -> None:
    sent: list[tuple[float, bytes]] = []
    loop = asyncio.get_running_loop()

    async def send(stream: OutputStream, data: bytes) -> None:
        sent.append((loop.time(), data))

    batcher = OutputBatcher(send, delay_s=0.5, quiet_at_once=True)
    started = loop.time()
    await batcher.add(OutputStream.STDOUT, b"answer\n")
    await asyncio.sleep(0.05)
    assert sent and sent[0][1] == b"answer\n"
    assert sent[0][0] - started < 0.05  # not held for the window
    await batcher.close()


async def test_a_flood_costs_at_most_one_message_per_window() -> None:
    sent: list[bytes] = []

    async def send(stream: OutputStream, data: bytes) -> None:
        sent.append(data)

    loop = asyncio.get_running_loop()
    batcher = OutputBatcher(send, delay_s=0.05, quiet_at_once=True)
    started = loop.time()
    for _ in range(200):  # a byte about every millisecond
        await batcher.add(OutputStream.STDOUT, b"x")
        await asyncio.sleep(0.001)
    await batcher.close()
    windows = (loop.time() - started) / 0.05
    assert b"".join(sent) == b"x" * 200
    # One message per window, the first at once, and the close's: never one per byte.
    assert len(sent) <= windows + 2, (len(sent), windows)
    assert len(sent) < 50


async def test_the_answer_to_new_input_goes_out_at_once_even_inside_a_window() -> None:
    sent: list[tuple[float, bytes]] = []
    loop = asyncio.get_running_loop()

    async def send(stream: OutputStream, data: bytes) -> None:
        sent.append((loop.time(), data))

    batcher = OutputBatcher(send, delay_s=0.5, quiet_at_once=True)
    await batcher.add(OutputStream.STDOUT, b"prompt\n")
    await asyncio.sleep(0.01)
    batcher.expect_answer()  # a line reached the program
    asked = loop.time()
    await batcher.add(OutputStream.STDOUT, b"answer\n")
    await asyncio.sleep(0.05)
    assert [data for _, data in sent] == [b"prompt\n", b"answer\n"]
    assert sent[1][0] - asked < 0.05  # not held for the rest of the 0.5 s window
    await batcher.close()
