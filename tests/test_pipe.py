"""The helper processes' message pipe (``tinyo.pipe``) on real OS pipes: ``recv_all`` takes every whole
message waiting in one read, keeps the start of a message still on its way for the next call, and mixes with
``recv`` on the same pipe."""

from __future__ import annotations

import os
import pickle
import struct
import threading

import pytest

from tinyo.pipe import READ_SIZE, Pipe


@pytest.fixture
def ends():
    r, w = os.pipe()
    reader, writer = Pipe(r), Pipe(w)
    yield reader, writer
    reader.close()
    writer.close()


def test_every_message_waiting_comes_in_one_call_in_order(ends):
    reader, writer = ends
    for i in range(5):
        writer.send(("done", i, None))
    assert reader.recv_all() == [("done", i, None) for i in range(5)]


def test_a_message_whose_end_is_on_its_way_is_waited_for_and_the_next_one_s_start_kept(ends):
    reader, writer = ends
    first, second = pickle.dumps(("run", [1, 2, 3])), pickle.dumps(("cancel", 7))
    framed = struct.pack("!i", len(first)) + first + struct.pack("!i", len(second)) + second
    cut = len(first) + 4 + 2  # the first whole, two bytes of the second's length
    os.write(writer.fd, framed[:cut])
    assert reader.recv_all() == [("run", [1, 2, 3])]
    later = threading.Timer(0.05, lambda: os.write(writer.fd, framed[cut:]))
    later.start()
    assert reader.recv_all() == [("cancel", 7)]  # waited for the rest, from the two bytes kept
    later.join()
    writer.send("after")
    assert reader.recv() == "after"  # recv and recv_all share what was read


def test_a_message_larger_than_one_read_comes_whole_while_another_thread_writes_it(ends):
    reader, writer = ends
    big = ["x" * 1000] * (4 * READ_SIZE // 1000)
    sender = threading.Thread(target=lambda: (writer.send(big), writer.send("small")))
    sender.start()
    got: list[object] = []
    while len(got) < 2:
        got.extend(reader.recv_all())
    sender.join()
    assert got == [big, "small"]


def test_the_end_of_the_pipe_comes_after_the_last_messages(ends):
    reader, writer = ends
    writer.send(1)
    writer.send(2)
    writer.close()
    assert reader.recv_all() == [1, 2]
    with pytest.raises(EOFError):
        reader.recv_all()


def test_the_end_of_the_pipe_mid_message_is_the_end(ends):
    reader, writer = ends
    data = pickle.dumps("cut short")
    os.write(writer.fd, struct.pack("!i", len(data)) + data[:3])
    writer.close()
    with pytest.raises(EOFError):
        reader.recv_all()
