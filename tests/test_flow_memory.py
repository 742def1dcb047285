"""Data flows: bounded buffers keep rows in flight bounded, and a slow step back-pressures producers."""

from __future__ import annotations

import time

from tinyo.flow import Flow, steps

ROWS = 1_000_000
CHUNK = 1000
BUFFER = 5000


class CountingSource(steps.Step):
    """Yields ROWS rows in chunks and counts the rows already accepted downstream."""

    def __init__(self, counter: list[int]) -> None:
        self.counter = counter

    def process(self, rows):
        def chunks():
            for start in range(0, ROWS, CHUNK):
                yield [{"i": k} for k in range(start, start + CHUNK)]
                self.counter[0] = start + CHUNK  # the yield returned: the chunk was accepted by the hop

        return chunks()


class SlowSink(steps.Step):
    """Sleeps a little per chunk and records the most rows ever in flight upstream of it."""

    def __init__(self, produced: list[int], worst: list[int]) -> None:
        self.produced = produced
        self.worst = worst

    def setup(self):
        self.consumed = 0

    def process(self, rows):
        self.consumed += len(rows)
        in_flight = self.produced[0] - self.consumed
        if in_flight > self.worst[0]:
            self.worst[0] = in_flight
        time.sleep(0.001)
        return None


def test_a_million_rows_into_a_slow_sink_stay_within_the_buffers():
    produced, worst = [0], [0]
    samples = []
    flow = Flow("bounded", chunk_size=CHUNK, buffer=BUFFER)
    src = flow.step("source", CountingSource(produced))
    mid = flow.step("map", steps.Map(lambda r: r))
    sink = flow.step("sink", SlowSink(produced, worst))
    flow.hop(src, mid)
    flow.hop(mid, sink)
    started = time.monotonic()
    run = flow.run(on_metrics=samples.append)
    assert run.ok, run.error
    assert run.rows_in("sink") == ROWS
    assert time.monotonic() - started < 30

    # rows between the source and the sink: at most the map's and the sink's hop buffers plus the
    # one chunk the map holds; an unbounded runtime would have let the fast source run far ahead
    assert worst[0] <= 2 * BUFFER + CHUNK, worst[0]
    assert worst[0] >= BUFFER, "the slow sink should have filled the buffers"

    # the metrics tell the same story
    by_step = {}
    for s in samples:
        by_step.setdefault(s["step"], []).append(s)
    for name in ("map", "sink"):
        assert {s["buffer_size"] for s in by_step[name]} == {BUFFER}
        assert max(s["buffer_fill"] for s in by_step[name]) <= 1.0
    assert max(s["buffer_fill"] for s in by_step["sink"]) >= 0.8
    assert any(s["state"] == "blocked" for s in by_step["source"] + by_step["map"])
    final = run.metrics["sink"][0]
    assert final.state == "done" and final.rows_in == ROWS and final.buffer_fill == 0.0
