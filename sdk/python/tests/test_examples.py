"""examples/tweets/*.py with the test kit, and the generator under the real operator across a swap."""
import importlib.util
import os
import re
import sys

import pytest

from conftest import SDK
from topo.testing import TestContext

EXAMPLES = os.path.normpath(os.path.join(SDK, "..", "..", "examples", "tweets"))


def load(name):
    # As the operator does: the file's folder on the path (generator_v2 imports generator).
    if EXAMPLES not in sys.path:
        sys.path.insert(0, EXAMPLES)
    spec = importlib.util.spec_from_file_location(f"example_{name}", os.path.join(EXAMPLES, f"{name}.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen = load("generator")
gen2 = load("generator_v2")
sink = load("sink")


def ts_constant(name):
    with open(os.path.join(EXAMPLES, "generator.ts"), encoding="utf-8") as f:
        return int(re.search(rf"export const {name} = (\d+);", f.read()).group(1))


def test_generator_matches_generator_ts():
    assert gen.TICK_MS == gen2.TICK_MS == ts_constant("TICK_MS")
    assert gen.TWEETS_PER_TICK == ts_constant("TWEETS_PER_TICK")
    with open(os.path.join(EXAMPLES, "generator.ts"), encoding="utf-8") as f:
        ts = f.read()
    vocab = re.findall(r"'([A-Za-z]+)'", ts[ts.index("VOCABULARY = ["):ts.index("] as const")])
    assert gen.VOCABULARY == vocab
    # Version 2 takes all that from version 1 (imported, not copied).
    assert gen2.MockTweetComputationV2.__mro__[1].__name__ == "MockTweetComputation"


def test_generator_emits_tweets_on_its_tick():
    t = TestContext(gen.MockTweetComputation, now=1_000_000)
    t.init()  # the first tick is due at once
    first = t.take_outputs()
    assert len(first) == gen.TWEETS_PER_TICK
    assert t.timers[0].at_ms == 1_000_000 + gen.TICK_MS
    t.advance_by(10 * gen.TICK_MS)
    out = first + t.take_outputs()
    assert len(out) == 11 * gen.TWEETS_PER_TICK
    assert [o.value["id"] for o in out] == list(range(len(out)))
    for o in out:
        assert o.stream == "tweets" and o.key == o.value["user"] and set(o.value) == {"id", "user", "text"}
        tags = [w[1:] for w in o.value["text"].split() if w.startswith("#")]
        assert len(tags) <= 3 and len(set(tags)) == len(tags) and all(tag in gen.VOCABULARY for tag in tags)
    assert t.state["next"] == len(out)


def test_generator_ids_are_unique_across_instances():
    ids = []
    for index in range(3):
        t = TestContext(gen.MockTweetComputation, index=index, count=3, now=0)
        t.advance_by(5 * gen.TICK_MS)
        ids += [o.value["id"] for o in t.take_outputs()]
    assert len(ids) == len(set(ids)) == 3 * 6 * gen.TWEETS_PER_TICK


def test_generator_v2_continues_the_ids_of_v1_and_marks_itself():
    t1 = TestContext(gen.MockTweetComputation, now=0)
    t1.advance_by(3 * gen.TICK_MS)
    v1 = t1.take_outputs()
    t2 = TestContext(gen2.MockTweetComputationV2, now=t1.now)
    for k in t1.state.keys():
        t2.state[k] = t1.state[k]
    t2.advance_by(2 * gen.TICK_MS)
    v2 = t2.take_outputs()
    ids = [o.value["id"] for o in v1 + v2]
    assert ids == list(range(len(ids)))
    assert all(o.value.get("v") == 2 and o.value["text"].endswith("(v2)") for o in v2)
    assert all("v" not in o.value for o in v1)


def test_sink_keeps_totals_and_logs():
    t = TestContext(sink.Sink)
    t.send("top-hashtags", "0", {"window": 0, "instance": 0, "top": [{"tag": "nats", "count": 3}, {"tag": "rust", "count": 1}]})
    t.send("top-hashtags", "5000", {"window": 5000, "instance": 1, "top": [{"tag": "nats", "count": 2}]})
    assert t.state["windows"] == 2 and t.state["mentions"] == 6
    assert len(t.logs) == 2 and t.logs[1]["level"] == "info"
    assert t.logs[0]["msg"] == ("top hashtags of 1970-01-01T00:00:00.000Z (counter 0): #nats 3, #rust 1; "
                                "running total: 4 mentions in 1 top-N records")
    assert t.logs[1]["fields"] == {"window": 5000, "instance": 1, "windows": 2, "mentions": 6}


def test_generator_swap_through_real_operators(operator):
    """v1 runs, its state is snapshotted, v2 is initialised from it (as a hot swap does): no id lost or repeated."""
    op1 = operator(os.path.join(EXAMPLES, "generator.py"), name="mock-tweets-generator")
    assert op1.read_frame()["metadata"] == {"name": "mock-tweets-generator", "istreams": [], "ostreams": ["tweets"],
                                           "delivery": {"tweets": "at-least-once"}}
    inst = {"index": 1, "count": 2, "id": "mock-tweets-generator-1-abc"}
    c = op1.request("init", instance=inst, state=[], timers=[], runInit=True)
    at = c["nextTimerAt"]
    ids = []
    for _ in range(3):
        c = op1.request("activate", now=at, timers=True, batches=[])
        ids += [o[2]["id"] for o in c["outputs"]]
        at = c["nextTimerAt"]
    snap = op1.request("snapshot")
    op1.request("destroy")
    assert op1.wait() == 0
    op2 = operator(os.path.join(EXAMPLES, "generator_v2.py"))
    assert op2.read_frame()["metadata"]["name"] == "mock-tweets-generator"
    c = op2.request("init", instance=inst, state=snap["state"], timers=snap["timers"], runInit=True)
    assert c["failures"] == []
    c = op2.request("activate", now=c["nextTimerAt"], timers=True, batches=[])
    v2 = [o[2] for o in c["outputs"]]
    assert v2 and all(v["v"] == 2 for v in v2)
    ids += [v["id"] for v in v2]
    assert ids == [i * 2 + 1 for i in range(len(ids))]
