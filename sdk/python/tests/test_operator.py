"""The operator process itself: `python -m topo run` driven over fds 3/4 as a worker drives it."""
import json
import os
import time

import msgpack
import pytest

from conftest import batch, load_vectors
from topo.protocol import partition_of

COMPLETION_KEYS = {"op", "id", "outputs", "records", "batches", "failures", "nextTimerAt", "stateKeys", "timers", "busyMs"}

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"

ECHO = '''
import asyncio
from topo import Computation, Metadata, Stream, now_ms

class Echo(Computation):
    def metadata(self):
        return Metadata(name="echo", istreams=["in", Stream("keyed", grouping="key")], ostreams=["out", "log"])

    def init(self, ctx):
        ctx.state["inits"] = ctx.state.get("inits", 0) + 1
        ctx.produce_record("out", "init", {"instance": list(ctx.instance), "name": ctx.name})
        ctx.log.info("started", extra={"index": ctx.instance.index})

    def process_record(self, ctx, r):
        v = r.value
        if v == "throw":
            raise ValueError(f"bad record {r.key}")
        if v == "undeclared":
            ctx.produce_record("nowhere", r.key, 1)
        if v == "unencodable":
            ctx.produce_record("out", r.key, object())
        if v == "int-key":
            ctx.produce_record("out", 7, 1)
        if v == "print":
            print("hello from print", r.key, flush=True)
        if v == "long":
            raise ValueError("\u00e9" * 5000)
        if v == "sleep":
            import time; time.sleep(0.6)
        if isinstance(v, dict) and "timer" in v:
            ctx.set_timer(v["timer"], v["at"])
        ctx.state[r.key] = ctx.state.get(r.key, 0) + 1
        ctx.produce_record("out", r.key, [r.stream, r.key, r.value, r.timestamp, r.seq, r.producer, r.trace_id])

    def process_timer(self, ctx, key, time):
        if key.startswith("throw"):
            raise RuntimeError(f"timer {key} failed")
        if key == "reset-b":
            ctx.set_timer("b", time + 1000)   # b is due in the same round: skipped, replaced
        ctx.produce_record("log", key, time)

    def destroy(self, ctx):
        if ctx.state.get("fail-destroy"):
            raise RuntimeError("flush failed")
        ctx.produce_record("log", "destroy", len(ctx.state))
'''

ASYNC = '''
import asyncio
from topo import Computation, Metadata

class Slow(Computation):
    def metadata(self):
        return Metadata(name="slow", istreams=["in"], ostreams=["out"])

    async def init(self, ctx):
        await asyncio.sleep(0)
        self.ticks = 0
        self.bg = asyncio.get_running_loop().create_task(self.ticker())

    async def ticker(self):
        while True:
            await asyncio.sleep(0.01)
            self.ticks += 1

    async def process_record(self, ctx, r):
        self.active = getattr(self, "active", 0) + 1
        assert self.active == 1, "callbacks overlap"
        await asyncio.sleep(0.001)
        if r.value == "throw":
            self.active -= 1
            raise KeyError("missing")
        ctx.produce_record("out", r.key, {"ticks_seen": self.ticks > 0})
        self.active -= 1

    async def process_timer(self, ctx, key, time):
        await asyncio.sleep(0)
        ctx.produce_record("out", key, time)
'''

INIT = {"instance": {"index": 0, "count": 1, "id": "echo-0-abc"}, "state": [], "timers": [], "runInit": True}


def start(operator, write_comp, source=ECHO, **kw):
    op = operator(write_comp(source), **kw)
    hello = op.read_frame()
    assert hello is not None, op.stderr()
    return op, hello


def rec(key, value, ts=1700000000000.0, seq=1, trace=None):
    r = [key, value, ts, seq]
    if trace is not None:
        r.append(trace)
    return r


def test_hello_carries_the_normalized_metadata(operator, write_comp):
    op, hello = start(operator, write_comp)
    assert hello["op"] == "hello" and hello["protocol"] == 1
    assert hello["metadata"] == {"name": "echo", "istreams": [{"stream": "in", "grouping": "shuffle"},
                                                             {"stream": "keyed", "grouping": "key"}], "ostreams": ["out", "log"]}
    assert hello["sdk"].startswith("topo-python ")
    assert "id" not in hello


def test_init_runs_init_and_reports(operator, write_comp):
    op, _ = start(operator, write_comp)
    c = op.request("init", **{**INIT, "state": [["inits", 4], ["x", {"a": [1, 2]}]], "timers": [["t1", 5000]]})
    assert set(c) == COMPLETION_KEYS | {"logs"}
    assert c["op"] == "completion" and c["failures"] == []
    assert c["outputs"] == [["out", "init", {"instance": [0, 1, "echo-0-abc"], "name": "echo"}]]
    assert c["records"] == 0 and c["batches"] == []
    assert c["stateKeys"] == 2 and c["timers"] == 1 and c["nextTimerAt"] == 5000
    assert c["logs"] == [["info", "started", {"index": 0}]]
    assert isinstance(c["busyMs"], float) and c["busyMs"] >= 0
    snap = op.request("snapshot")
    assert snap == {"op": "snapshot", "id": 2, "state": [["inits", 5], ["x", {"a": [1, 2]}]], "timers": [["t1", 5000]]}


def test_init_without_run_init_only_restores(operator, write_comp):
    op, _ = start(operator, write_comp)
    c = op.request("init", **{**INIT, "state": [["inits", 4]], "runInit": False})
    assert c["outputs"] == [] and c["stateKeys"] == 1 and "logs" not in c
    assert op.request("snapshot")["state"] == [["inits", 4]]


def test_init_failure_is_reported(operator, write_comp):
    src = '''
from topo import Computation, Metadata
class Bad(Computation):
    def metadata(self): return Metadata(name="bad", istreams=[], ostreams=[])
    def init(self, ctx): raise FileNotFoundError("config file missing")
'''
    op, _ = start(operator, write_comp, src)
    c = op.request("init", **INIT)
    assert c["failures"] == [{"where": "init", "error": "FileNotFoundError: config file missing"}]


def test_activate_hands_records_in_order(operator, write_comp):
    op, _ = start(operator, write_comp)
    op.request("init", **INIT)
    b1 = batch("p1", "in", 1, [rec("k", "hello"), rec("k2", {"n": 1}, ts=1700000000001, seq=2, trace=TRACE)])
    b2 = batch("thermo-0", "keyed", 9, [rec("z", b"\x00\xff", seq=3.0, trace=None), ["n", None, 5, 6, None]])
    c = op.request("activate", now=1, timers=True, batches=[{"stream": "in", "data": b1}, {"stream": "keyed", "data": b2}],
                   unknownField="ignored")
    assert c["failures"] == []
    assert c["records"] == 4
    assert c["batches"] == [["p1", 2], ["thermo-0", 2]]
    assert c["outputs"] == [
        ["out", "k", ["in", "k", "hello", 1700000000000, 1, "p1", None]],
        # Produced while handling a traced record: the output carries its trace (PROTOCOL.md, Traces).
        ["out", "k2", ["in", "k2", {"n": 1}, 1700000000001, 2, "p1", TRACE], TRACE],
        ["out", "z", ["keyed", "z", b"\x00\xff", 1700000000000, 3, "thermo-0", None]],
        ["out", "n", ["keyed", "n", None, 5, 6, "thermo-0", None]],
    ]
    assert c["stateKeys"] == 5  # inits + 4 keys
    assert "stopped" not in c
    assert "badTraces" not in c


def test_a_malformed_trace_is_dropped_and_counted(operator, write_comp):
    op, _ = start(operator, write_comp)
    op.request("init", **INIT)
    bad = ["tr-1", TRACE.upper(), "0" * 32, "x" * 5000, TRACE + "0"]
    b = batch("p1", "in", 1, [rec(f"k{i}", i, seq=i + 1, trace=t) for i, t in enumerate(bad)] + [rec("ok", 9, seq=9, trace=TRACE)])
    c = op.request("activate", now=1, timers=False, batches=[{"stream": "in", "data": b}])
    assert c["failures"] == []
    assert c["records"] == len(bad) + 1
    # Handed over untraced, and what they caused carries no trace; the well-formed one keeps its own.
    assert [o[2][6] for o in c["outputs"]] == [None] * len(bad) + [TRACE]
    assert [len(o) for o in c["outputs"]] == [3] * len(bad) + [4]
    assert c["badTraces"] == len(bad)


def test_a_throwing_record_is_a_failure_and_the_rest_goes_on(operator, write_comp):
    op, _ = start(operator, write_comp)
    op.request("init", **INIT)
    b = batch("p1", "in", 1, [rec("a", 1), rec("b", "throw", seq=2), rec("c", "undeclared", seq=3), rec("d", "unencodable", seq=4),
                              rec("e", "int-key", seq=5), rec("f", 2, seq=6)])
    c = op.request("activate", now=1, timers=False, batches=[{"stream": "in", "data": b}])
    assert c["records"] == 6 and c["batches"] == [["p1", 6]]
    f = c["failures"]
    assert [(x["where"], x["batch"], x["index"]) for x in f] == [("processRecord", 0, i) for i in (1, 2, 3, 4)]
    assert f[0]["error"] == "ValueError: bad record b"
    assert '"nowhere" is not an ostream of "echo" (declared: out, log)' in f[1]["error"]
    assert 'produce_record("out", "d"): value is not msgpack-encodable' in f[2]["error"]
    assert "key must be a str" in f[3]["error"]
    assert [o[1] for o in c["outputs"]] == ["a", "f"]


def test_stop_on_failure_stops_at_the_first_failure(operator, write_comp):
    op, _ = start(operator, write_comp)
    op.request("init", **INIT)
    b = batch("p1", "in", 1, [rec("a", 1), rec("b", "throw", seq=2), rec("c", 3, seq=3)])
    b2 = batch("p1", "in", 2, [rec("d", 1, seq=4)])
    c = op.request("activate", now=1, timers=True, stopOnFailure=True,
                   batches=[{"stream": "in", "data": b}, {"stream": "in", "data": b2}])
    assert c["stopped"] is True
    assert c["records"] == 2 and c["batches"] == [["p1", 2]]
    assert c["failures"] == [{"where": "processRecord", "batch": 0, "index": 1, "error": "ValueError: bad record b"}]
    assert [o[1] for o in c["outputs"]] == ["a"]
    # without a failure, stopOnFailure changes nothing
    c = op.request("activate", now=1, timers=True, stopOnFailure=True, batches=[{"stream": "in", "data": b2}])
    assert "stopped" not in c and c["records"] == 1


def test_stop_on_failure_in_a_timer(operator, write_comp):
    op, _ = start(operator, write_comp)
    op.request("init", **{**INIT, "timers": [["throw-1", 10], ["later", 20]]})
    b = batch("p1", "in", 1, [rec("a", 1)])
    c = op.request("activate", now=30, timers=True, stopOnFailure=True, batches=[{"stream": "in", "data": b}])
    assert c["stopped"] is True and c["records"] == 0 and c["batches"] == []
    assert c["failures"] == [{"where": "processTimer", "error": "RuntimeError: timer throw-1 failed", "timer": "throw-1"}]


def test_timers_fire_earliest_first_before_batches(operator, write_comp):
    op, _ = start(operator, write_comp)
    op.request("init", **{**INIT, "timers": [["c", 300], ["a", 100], ["throw-x", 150], ["b", 200], ["reset-b", 50], ["future", 10_000]]})
    b = batch("p1", "in", 1, [rec("r", {"timer": "new", "at": 250})])
    c = op.request("activate", now=300, timers=True, batches=[{"stream": "in", "data": b}])
    # reset-b (50) sets b again: the b firing of this round is skipped, b now pending at 1050
    assert [o[1] for o in c["outputs"]] == ["reset-b", "a", "c", "r"]
    assert [o[2] for o in c["outputs"][:3]] == [50, 100, 300]
    assert c["failures"] == [{"where": "processTimer", "error": "RuntimeError: timer throw-x failed", "timer": "throw-x"}]
    # the record set "new" at 250, already past: it waits for the next activate with timers
    assert c["nextTimerAt"] == 250 and c["timers"] == 3  # b, future, new
    c = op.request("activate", now=300, timers=False, batches=[])
    assert c["outputs"] == [] and c["nextTimerAt"] == 250
    c = op.request("activate", now=2000, timers=True, batches=[
        {"stream": "in", "data": batch("p1", "in", 2, [rec("r", {"timer": "half", "at": 2100.5}, seq=2)])}])
    assert [(o[1], o[2]) for o in c["outputs"][:2]] == [("new", 250), ("b", 1050)]
    assert c["nextTimerAt"] == 2101 and c["timers"] == 2  # an int, rounded up: due at or after 2100.5
    c = op.request("activate", now=2101, timers=True, batches=[])
    assert c["outputs"] == [["log", "half", 2100.5]]
    assert c["nextTimerAt"] == 10_000 and c["timers"] == 1


def test_malformed_batch_is_a_decode_failure(operator, write_comp):
    op, _ = start(operator, write_comp)
    op.request("init", **INIT)
    good = batch("p1", "in", 1, [rec("a", 1)])
    bad_v = batch("p1", "in", 2, [rec("b", 1)]).replace(b"\xa1v\x01", b"\xa1v\x02")
    bad_rec = batch("p1", "in", 3, [rec("a", 1), [1, 2, 3, 4]])
    c = op.request("activate", now=1, timers=True, batches=[
        {"stream": "in", "data": b"\xc1garbage"}, {"stream": "in", "data": bad_v}, {"stream": "in", "data": good},
        {"stream": "in", "data": bad_rec}, {"stream": "in", "data": "not bin"}])
    assert c["batches"] == [None, None, ["p1", 1], None, None]
    assert c["records"] == 1
    f = c["failures"]
    assert [(x["where"], x["batch"]) for x in f] == [("decode", 0), ("decode", 1), ("decode", 3), ("decode", 4)]
    assert f[0]["error"].startswith("not msgpack")
    assert f[1]["error"].startswith("unsupported protocol version")
    assert f[2]["error"] == "recs[1].key must be a string"
    assert [o[1] for o in c["outputs"]] == ["a"]


def test_malformed_vectors_through_the_operator(operator, write_comp):
    op, _ = start(operator, write_comp)
    op.request("init", **INIT)
    vectors = load_vectors("malformed.json")["vectors"]
    c = op.request("activate", now=1, timers=False, batches=[{"stream": "in", "data": bytes.fromhex(v["hex"])} for v in vectors])
    assert c["batches"] == [None] * len(vectors)
    assert c["records"] == 0 and c["outputs"] == []
    for v, f in zip(vectors, c["failures"]):
        assert f["where"] == "decode" and v["reason"] in f["error"], (v["name"], f)


def test_snapshot_filtered_by_partitions(operator, write_comp):
    op, _ = start(operator, write_comp)
    keys = [f"user-{i}" for i in range(40)]
    state = [[k, i] for i, k in enumerate(keys)]
    timers = [[k, 1000 + i] for i, k in enumerate(keys[:10])]
    op.request("init", **{**INIT, "state": state, "timers": timers, "runInit": False})
    want = {1, 4, 7}
    s = op.request("snapshot", partitions=sorted(want))
    assert s["state"] == [e for e in state if partition_of(e[0]) in want] and s["state"]
    assert s["timers"] == [t for t in timers if partition_of(t[0]) in want]
    assert op.request("snapshot", partitions=[])["state"] == []
    assert op.request("snapshot")["state"] == state  # not changed by snapshots


def test_operator_json_snapshot_vectors(operator, write_comp):
    """init-with-state-and-timers, then the snapshot requests of operator.json give its reply vectors."""
    src = '''
from topo import Computation, Metadata
class WordLengths(Computation):
    def metadata(self): return Metadata(name="word-lengths", istreams=["words"], ostreams=["word-lengths"])
    def process_record(self, ctx, r): pass
'''
    op, hello = start(operator, write_comp, src)
    vec = {v["name"]: v for v in load_vectors("operator.json")["vectors"]}
    init = vec["init-with-state-and-timers"]["decoded"]
    c = op.request("init", **{k: v for k, v in init.items() if k not in ("op", "id")})
    assert c["stateKeys"] == 5 and c["timers"] == 2
    for req, reply in (("snapshot-all", "snapshot-reply-all"), ("snapshot-partitions", "snapshot-reply-partitions")):
        want = vec[reply]["decoded"]
        got = op.request("snapshot", **{k: v for k, v in vec[req]["decoded"].items() if k not in ("op", "id")})
        assert {k: got[k] for k in ("state", "timers")} == {k: want[k] for k in ("state", "timers")}
    # the raw request frames of the vectors are accepted as they are
    os.write(op.w, bytes.fromhex(vec["activate-timers-only"]["hex"]))
    c = op.read_frame()
    assert c["op"] == "completion" and c["id"] == 2 and c["timers"] == 0


def test_snapshot_of_state_that_will_not_encode_is_an_error_frame(operator, write_comp):
    src = '''
from topo import Computation, Metadata
class Sneaky(Computation):
    def metadata(self): return Metadata(name="sneaky", istreams=[], ostreams=[])
    def init(self, ctx):
        ctx.state["x"] = []
        ctx.state["x"].append(object())   # mutated after set: only the snapshot can see it
'''
    op, _ = start(operator, write_comp, src)
    op.request("init", **INIT)
    r = op.request("snapshot")
    assert r["op"] == "error" and "will not encode" in r["error"]


def test_destroy_replies_then_exits_0(operator, write_comp):
    op, _ = start(operator, write_comp)
    op.request("init", **INIT)
    c = op.request("destroy")
    assert c["op"] == "completion" and c["outputs"] == [["log", "destroy", 1]] and c["failures"] == []
    assert op.wait() == 0


def test_destroy_failure_is_reported_and_still_exits_0(operator, write_comp):
    op, _ = start(operator, write_comp)
    op.request("init", **{**INIT, "state": [["fail-destroy", True]], "runInit": False})
    c = op.request("destroy")
    assert c["failures"] == [{"where": "destroy", "error": "RuntimeError: flush failed"}]
    assert op.wait() == 0


def test_exits_on_end_of_file(operator, write_comp):
    op, _ = start(operator, write_comp)
    op.request("init", **INIT)
    op.close_input()
    assert op.wait() == 0
    op2, _ = start(operator, write_comp)  # before any request too
    op2.close_input()
    assert op2.wait() == 0


def test_exits_on_end_of_file_while_an_async_callback_waits(operator, write_comp):
    src = '''
import asyncio
from topo import Computation, Metadata
class Hang(Computation):
    def metadata(self): return Metadata(name="hang", istreams=["in"], ostreams=[])
    async def process_record(self, ctx, r): await asyncio.Event().wait()
'''
    op, _ = start(operator, write_comp, src)
    op.request("init", **INIT)
    body = msgpack.packb({"op": "activate", "id": 2, "now": 1, "timers": False,
                          "batches": [{"stream": "in", "data": batch("p1", "in", 1, [rec("a", 1)])}]})
    os.write(op.w, len(body).to_bytes(4, "big") + body)
    time.sleep(0.2)
    assert op.proc.poll() is None
    op.close_input()
    assert op.wait(timeout=5) == 0


def test_a_frame_that_is_not_msgpack_ends_the_process(operator, write_comp):
    op, _ = start(operator, write_comp)
    os.write(op.w, b"\x00\x00\x00\x03\x82\x00\x00")
    assert op.wait() == 1
    assert "not msgpack" in op.stderr()


def test_progress_file(operator, write_comp):
    op, _ = start(operator, write_comp, progress=True)
    op.request("init", **INIT)
    phase, b, i, tick = op.progress()
    assert (phase, b, i) == (0, -1, -1) and tick == 2  # init, idle
    data = batch("p1", "in", 1, [rec("a", 1), rec("b", "sleep", seq=2)])
    body = msgpack.packb({"op": "activate", "id": 2, "now": 1, "timers": False,
                          "batches": [{"stream": "in", "data": batch("p1", "in", 0, [])}, {"stream": "in", "data": data}]})
    os.write(op.w, len(body).to_bytes(4, "big") + body)
    time.sleep(0.3)
    assert op.progress()[:3] == [3, 1, 1]  # processRecord, batch 1, record 1: the one that sleeps
    c = op.read_frame()
    assert c["records"] == 2 and c["batches"] == [["p1", 0], ["p1", 2]]
    phase, b, i, tick2 = op.progress()
    assert (phase, b, i) == (0, -1, -1) and tick2 == tick + 3


def test_print_goes_to_stdout_and_breaks_nothing(operator, write_comp):
    op, _ = start(operator, write_comp)
    op.request("init", **INIT)
    c = op.request("activate", now=1, timers=False, batches=[{"stream": "in", "data": batch("p1", "in", 1, [rec("x", "print")])}])
    assert c["failures"] == [] and c["records"] == 1
    op.request("destroy")
    op.wait()
    assert "hello from print x" in op.proc.stdout.read().decode()


def test_async_callbacks(operator, write_comp):
    op, _ = start(operator, write_comp, ASYNC)
    assert op.request("init", **{**INIT, "timers": [["t", 5]]})["failures"] == []
    time.sleep(0.1)  # the task started in init runs between requests
    b = batch("p1", "in", 1, [rec("a", 1), rec("b", "throw", seq=2), rec("c", 3, seq=3)])
    c = op.request("activate", now=10, timers=True, batches=[{"stream": "in", "data": b}])
    assert c["outputs"] == [["out", "t", 5], ["out", "a", {"ticks_seen": True}], ["out", "c", {"ticks_seen": True}]]
    assert c["failures"] == [{"where": "processRecord", "batch": 0, "index": 1, "error": "KeyError: 'missing'"}]
    assert c["records"] == 3


def test_unknown_request_gets_an_error_frame(operator, write_comp):
    op, _ = start(operator, write_comp)
    r = op.request("frobnicate")
    assert r["op"] == "error" and "frobnicate" in r["error"]
    r = op.request("activate", now=1, timers=True, batches=[])
    assert r["op"] == "error" and "before init" in r["error"]


def test_name_from_environment_picks_the_class(operator, write_comp):
    src = '''
from topo import Computation, Metadata
class A(Computation):
    def metadata(self): return Metadata(name="alpha", istreams=[], ostreams=[])
class B(Computation):
    def metadata(self): return Metadata(name="beta", istreams=[], ostreams=[])
'''
    path = write_comp(src)
    op = operator(path, name="beta")
    assert op.read_frame()["metadata"]["name"] == "beta"
    op2 = operator(path, extra_args=["--name", "alpha"])
    assert op2.read_frame()["metadata"]["name"] == "alpha"
    op3 = operator(path + ":A")
    assert op3.read_frame()["metadata"]["name"] == "alpha"
    op4 = operator(path)  # ambiguous: no hello, exit 1, one line
    assert op4.read_frame() is None
    assert op4.wait() == 1
    err = op4.stderr()
    assert "several computations" in err and err.count("\n") == 1


@pytest.mark.parametrize("v", load_vectors("operator.json")["invalid"], ids=lambda v: v["name"])
def test_invalid_frame_vectors_end_the_process_without_a_reply(operator, write_comp, v):
    op, _ = start(operator, write_comp)
    os.write(op.w, bytes.fromhex(v["hex"]))
    op.close_input()
    assert op.read_frame() is None
    assert op.wait() == 1
    err = op.stderr()
    assert err.startswith("topo: run: ProtocolError: ") and err.count("\n") == 1


def test_over_non_blocking_socketpairs_with_large_frames(operator, write_comp):
    """Node hands "pipe" stdio to a child as non-blocking socketpairs: frames of MiBs both ways still work."""
    op = operator(write_comp(ECHO), socketpair=True)
    assert op.read_frame()["op"] == "hello"
    big = [[f"k{i}", "x" * 1000] for i in range(3000)]  # a 3 MB state in the init frame
    c = op.request("init", **{**INIT, "state": big, "runInit": False})
    assert c["stateKeys"] == 3000
    s = op.request("snapshot")  # a 3 MB reply: more than a socket buffer
    assert s["state"] == big
    recs = [rec(f"r{i}", "y" * 500, seq=i + 1) for i in range(2000)]
    c = op.request("activate", now=1, timers=False, batches=[{"stream": "in", "data": batch("p1", "in", 1, recs)}])
    assert c["records"] == 2000 and len(c["outputs"]) == 2000
    op.close_input()
    assert op.wait() == 0


def test_error_strings_are_cut_to_4096_utf8_bytes(operator, write_comp):
    op, _ = start(operator, write_comp)
    op.request("init", **INIT)
    c = op.request("activate", now=1, timers=False, batches=[{"stream": "in", "data": batch("p1", "in", 1, [rec("a", "long")])}])
    err = c["failures"][0]["error"]
    assert err.startswith("ValueError: \u00e9\u00e9") and err.endswith("(truncated)")
    assert 4000 < len(err.encode("utf-8")) <= 4096


def test_reply_schema_check_can_fail():
    from conftest import check_reply_schema
    good = {"op": "completion", "id": 1, "outputs": [["s", "k", 2]], "records": 0, "batches": [["p1", 0], None],
            "failures": [{"where": "decode", "error": "x", "batch": 1}], "nextTimerAt": None, "stateKeys": 0, "timers": 0,
            "busyMs": 0.5, "logs": [["info", "m"], ["warn", "m", {"a": 1}]], "stopped": True}
    check_reply_schema(good)
    for bad in ({"outputs": [["s", 1, 2]]}, {"outputs": [["s", "k"]]}, {"records": -1}, {"batches": [["p1"]]},
                {"failures": [{"where": "elsewhere", "error": "x"}]}, {"failures": [{"where": "init"}]},
                {"nextTimerAt": "soon"}, {"busyMs": -1}, {"logs": [["loud", "m"]]}, {"stopped": 1}, {"id": "1"}):
        with pytest.raises(AssertionError, match="operator-completion"):
            check_reply_schema({**good, **bad})
    with pytest.raises(AssertionError, match="operator-completion"):
        check_reply_schema({k: v for k, v in good.items() if k != "timers"})
    for frame in ({"op": "hello", "protocol": 2, "metadata": {"name": "x", "istreams": [], "ostreams": []}},
                  {"op": "snapshot", "id": 1, "state": [["k"]], "timers": []}, {"op": "error", "id": 1}):
        with pytest.raises(AssertionError, match="operator-"):
            check_reply_schema(frame)


def test_another_operator_protocol_is_refused(operator, write_comp):
    op = operator(write_comp(ECHO), env={"TOPO_OPERATOR_PROTOCOL": "2"})
    assert op.read_frame() is None
    assert op.wait() == 2
    assert "operator protocol 1" in op.stderr()


def test_exits_even_with_threads_and_tasks_left_behind(operator, write_comp):
    src = """
import asyncio, threading, time
from topo import Computation, Metadata
class Leaky(Computation):
    def metadata(self): return Metadata(name="leaky", istreams=[], ostreams=[])
    def init(self, ctx):
        threading.Thread(target=lambda: time.sleep(3600)).start()   # not a daemon
        asyncio.get_running_loop().create_task(self.stubborn())
    async def stubborn(self):
        while True:
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                pass
"""
    for how in ("destroy", "eof"):
        op, _ = start(operator, write_comp, src)
        op.request("init", **INIT)
        if how == "destroy":
            op.request("destroy")
        else:
            op.close_input()
        assert op.wait(timeout=5) == 0


def test_replies_over_the_frame_limit_become_error_frames(monkeypatch):
    import asyncio
    import topo.operator as opmod
    from topo import Computation, Metadata
    from topo.protocol import read_frame

    class Big(Computation):
        def metadata(self):
            return Metadata(name="big", istreams=[], ostreams=["o"])

        def init(self, ctx):
            ctx.state["x"] = "y" * 5000
            ctx.produce_record("o", "k", "z" * 5000)

    monkeypatch.setattr(opmod, "MAX_FRAME", 4000)
    r, w = os.pipe()
    try:
        op = opmod.Operator(Big(), w)
        asyncio.run(op.init(1, INIT))
        op.snapshot(2, {})
        c, s = read_frame(r), read_frame(r)
        assert c["op"] == "error" and c["id"] == 1 and "frame limit" in c["error"]
        assert s["op"] == "error" and s["id"] == 2 and "frame limit" in s["error"]
    finally:
        os.close(r)
        os.close(w)
