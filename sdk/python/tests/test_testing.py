"""topo.testing.TestContext and the computation API (Context, state, timers, logs)."""
import asyncio
import logging

import pytest

from topo import Computation, InvalidMetadataError, Metadata, Stream, now_ms
from topo.testing import Output, TestContext, Timer


class Counter(Computation):
    """The README's counter: counts per key, emits the top 5 at each 5 s window end."""

    def metadata(self):
        return Metadata(name="counter", istreams=[Stream("hashtags", grouping="key")], ostreams=["top-hashtags"])

    def init(self, ctx):
        ctx.set_timer("window", now_ms() + 5_000)

    def process_record(self, ctx, record):
        ctx.state[record.key] = ctx.state.get(record.key, 0) + 1

    def process_timer(self, ctx, key, time):
        top = sorted(ctx.state.items(), key=lambda kv: -kv[1])[:5]
        ctx.produce_record("top-hashtags", str(time), {"top": [{"tag": t, "count": c} for t, c in top]})
        for k in list(ctx.state.keys()):
            ctx.state.delete(k)
        ctx.log.info("window", extra={"tags": len(top)})
        ctx.set_timer("window", time + 5_000)


class AsyncCounter(Counter):
    def metadata(self):
        return Metadata(name="acounter", istreams=["hashtags"], ostreams=["top-hashtags"])

    async def init(self, ctx):
        await asyncio.sleep(0)
        ctx.set_timer("window", now_ms() + 5_000)

    async def process_record(self, ctx, record):
        await asyncio.sleep(0.001)
        if record.value == "throw":
            raise ValueError("async boom")
        ctx.state[record.key] = ctx.state.get(record.key, 0) + 1

    async def process_timer(self, ctx, key, time):
        await asyncio.sleep(0)
        Counter.process_timer(self, ctx, key, time)


def test_counter_with_the_kit():
    t = TestContext(Counter, now=1_000)
    t.send("hashtags", "nats", {"tag": "nats"})
    t.send("hashtags", "nats", {"tag": "nats"})
    t.send("hashtags", "rust", {"tag": "rust"})
    assert t.state["nats"] == 2 and len(t.state) == 2
    assert t.timers == [Timer("window", 6_000)]
    assert t.advance_by(4_999) == 0 and t.outputs == []
    assert t.advance_by(1) == 1
    out = t.take_outputs()
    assert out == [Output("top-hashtags", "6000", {"top": [{"tag": "nats", "count": 2}, {"tag": "rust", "count": 1}]})]
    assert out[0] == ("top-hashtags", "6000", {"top": [{"tag": "nats", "count": 2}, {"tag": "rust", "count": 1}]})
    assert t.outputs == [] and len(t.state) == 0
    assert t.logs == [{"level": "info", "msg": "window", "fields": {"tags": 2}, "time": 6_000}]
    assert t.advance_to(21_000) == 3  # 11000, 16000, 21000, in time order
    assert [o.key for o in t.take_outputs()] == ["11000", "16000", "21000"]
    assert t.now == 21_000


def test_async_callbacks_from_a_sync_test():
    t = TestContext(AsyncCounter(), now=0)
    t.send("hashtags", "a", 1)
    with pytest.raises(ValueError, match="async boom"):
        t.send("hashtags", "b", "throw")
    t.send("hashtags", "a", 1)
    t.advance_by(5_000)
    assert t.take_outputs()[0].value == {"top": [{"tag": "a", "count": 2}]}
    t.destroy()


def test_async_variants_inside_an_event_loop():
    async def scenario():
        t = TestContext(AsyncCounter, now=0)
        await t.asend("hashtags", "a", 1)
        with pytest.raises(RuntimeError, match="use the async methods"):
            t.send("hashtags", "a", 1)
        assert await t.aadvance_by(5_000) == 1
        await t.adestroy()
        return t.take_outputs()
    out = asyncio.run(scenario())
    assert out[0].value == {"top": [{"tag": "a", "count": 1}]}


def test_records_cross_msgpack_and_carry_their_fields():
    seen = []

    class Probe(Computation):
        def metadata(self):
            return Metadata(name="probe", istreams=["in"], ostreams=["out"])

        def process_record(self, ctx, r):
            seen.append(r)
            ctx.produce_record("out", r.key, {"t": (1, 2), "b": bytearray(b"x")})

    t = TestContext(Probe, now=50)
    t.send("in", "k", (1, 2), producer="up-1", trace_id="tr")
    t.send("in", "k", {"a": 1}, timestamp=7)
    assert [(r.stream, r.key, r.value, r.timestamp, r.seq, r.producer, r.trace_id) for r in seen] == [
        ("in", "k", [1, 2], 50, 1, "up-1", "tr"), ("in", "k", {"a": 1}, 7, 2, "test-producer", None)]
    assert t.outputs[0].value == {"t": [1, 2], "b": b"x"}
    with pytest.raises(TypeError, match="not msgpack-encodable"):
        t.send("in", "k", object())
    with pytest.raises(ValueError, match='"nope" is not an istream of "probe"'):
        t.send("nope", "k", 1)
    with pytest.raises(TypeError, match="key must be a str"):
        t.send("in", 1, 1)


def test_context_checks_in_the_call():
    errors = {}

    class Bad(Computation):
        def metadata(self):
            return Metadata(name="bad", istreams=[], ostreams=["a", "b"])

        def init(self, ctx):
            for name, fn in {
                "undeclared": lambda: ctx.produce_record("c", "k", 1),
                "key": lambda: ctx.produce_record("a", b"k", 1),
                "value": lambda: ctx.produce_record("a", "k", {1, 2}),
                "state": lambda: ctx.state.set("k", object()),
                "state-key": lambda: ctx.state.set(1, 1),
                "timer": lambda: ctx.set_timer("t", float("nan")),
                "timer-type": lambda: ctx.set_timer("t", "soon"),
            }.items():
                try:
                    fn()
                except Exception as err:
                    errors[name] = str(err)

    t = TestContext(Bad)
    t.init()
    assert errors["undeclared"] == 'produce_record: "c" is not an ostream of "bad" (declared: a, b)'
    assert "key must be a str" in errors["key"]
    assert "not msgpack-encodable" in errors["value"]
    assert "not msgpack-encodable" in errors["state"]
    assert "key must be a str" in errors["state-key"]
    assert "finite" in errors["timer"] and "number" in errors["timer-type"]
    assert t.outputs == [] and len(t.state) == 0 and t.timers == []


def test_state_is_dict_like():
    class S(Computation):
        def metadata(self):
            return Metadata(name="s", istreams=[], ostreams=[])

    t = TestContext(S)
    s = t.state
    s["a"] = 1
    s.set("b", [1, {"x": None}])
    assert s.get("a") == 1 and s.get("zz") is None and s.get("zz", 5) == 5 and s["b"] == [1, {"x": None}]
    assert "a" in s and "zz" not in s and len(s) == 2 and sorted(s.keys()) == ["a", "b"]
    assert s.delete("a") is True and s.delete("a") is False
    with pytest.raises(KeyError):
        s["a"]


def test_timers_one_per_key_and_round_rules():
    fired = []

    class T(Computation):
        def metadata(self):
            return Metadata(name="t", istreams=[], ostreams=[])

        def init(self, ctx):
            ctx.set_timer("x", 100)
            ctx.set_timer("x", 300)   # replaces
            ctx.set_timer("y", 200)
            ctx.set_timer("boom", 250)

        def process_timer(self, ctx, key, time):
            fired.append((key, time, now_ms()))
            if key == "boom":
                raise RuntimeError("timer boom")
            if key == "y":
                ctx.set_timer("y", time + 1000)

    t = TestContext(T, now=0)
    t.init()
    assert t.timers == [Timer("y", 200), Timer("boom", 250), Timer("x", 300)]
    with pytest.raises(RuntimeError, match="timer boom"):
        t.advance_to(400)
    assert fired == [("y", 200, 200), ("boom", 250, 250)]
    assert t.now == 250  # left at the failing timer's time
    assert t.advance_to(400) == 1 and fired[-1] == ("x", 300, 300)
    assert t.timers == [Timer("y", 1200)]
    with pytest.raises(ValueError, match="cannot go back"):
        t.advance_to(0)


def test_init_rules():
    class Boom(Computation):
        def metadata(self):
            return Metadata(name="boom", istreams=[], ostreams=[])

        def init(self, ctx):
            raise RuntimeError("no config")

    t = TestContext(Boom)
    with pytest.raises(RuntimeError, match="no config"):
        t.init()
    with pytest.raises(RuntimeError, match="did not start"):
        t.advance_by(1)
    t2 = TestContext(Counter)
    t2.init()
    with pytest.raises(RuntimeError, match="already ran"):
        t2.init()
    t2.destroy()
    with pytest.raises(RuntimeError, match="destroyed"):
        t2.send("hashtags", "a", 1)


def test_destroy_runs_once():
    calls = []

    class D(Computation):
        def metadata(self):
            return Metadata(name="d", istreams=[], ostreams=[])

        def destroy(self, ctx):
            calls.append(1)

    t = TestContext(D)
    t.destroy()           # init never ran: destroy does not run either
    assert calls == []
    t = TestContext(D)
    t.init()
    t.destroy()
    t.destroy()
    assert calls == [1]


def test_instance_and_logging():
    class L(Computation):
        def metadata(self):
            return Metadata(name="l", istreams=[], ostreams=[])

        def init(self, ctx):
            assert isinstance(ctx.log, logging.Logger)
            ctx.log.debug("d %s", "x")
            ctx.log.warning("w", extra={"n": 1, "obj": object()})
            try:
                raise KeyError("k")
            except KeyError:
                ctx.log.exception("failed")
            ctx.log.info("who", extra={"index": ctx.instance.index, "count": ctx.instance.count, "id": ctx.instance.id})

    t = TestContext(L, index=2, count=3)
    t.init()
    assert [(e["level"], e["msg"]) for e in t.logs] == [("debug", "d x"), ("warn", "w"), ("error", "failed"), ("info", "who")]
    assert t.logs[1]["fields"]["n"] == 1 and t.logs[1]["fields"]["obj"].startswith("<object")
    assert t.logs[2]["fields"]["err"]["type"] == "KeyError"
    assert t.logs[3]["fields"] == {"index": 2, "count": 3, "id": "l-2-test"}
    with pytest.raises(ValueError):
        TestContext(L, index=3, count=3)


def test_a_reader_without_process_record_is_refused():
    class NoProcess(Computation):
        def metadata(self):
            return Metadata(name="np", istreams=["in"], ostreams=[])

    with pytest.raises(TypeError, match="defines no process_record"):
        TestContext(NoProcess)


def test_invalid_metadata_is_refused_when_made():
    class Bad(Computation):
        def metadata(self):
            return Metadata(name="1bad", istreams=[], ostreams=[])

    with pytest.raises(InvalidMetadataError, match="name"):
        TestContext(Bad)


def test_now_ms_is_the_real_clock_outside_the_kit():
    import time
    assert abs(now_ms() - time.time() * 1000) < 1000
