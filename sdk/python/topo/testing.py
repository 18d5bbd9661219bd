"""The topo test kit: unit-test a computation in-process, without NATS or a worker
(the Python twin of sdk/testing/index.ts).

    from topo.testing import TestContext

    t = TestContext(Counter, now=0)          # a class or an instance
    t.send("hashtags", "nats", {"tag": "nats"})
    t.advance_by(6_000)                      # fires due timers, in time order
    assert t.take_outputs()[0].value == {"top": [{"tag": "nats", "count": 1}]}

Design: the methods are **synchronous** and drive a private asyncio event loop,
so ``async def`` callbacks work from ordinary test functions. Inside an async
test (a running event loop), use the coroutine twins ``ainit``, ``asend``,
``aadvance_to``, ``aadvance_by`` and ``adestroy`` instead, which run on the
caller's loop. Use one style per TestContext.

As in the runtime: callbacks never run concurrently, ``init`` runs first (on
first use if you do not call ``init()``), timers are one per key and fire
earliest first, values cross a msgpack round trip as on the wire, producing to
an undeclared stream raises. ``now_ms()`` returns the fake clock inside
callbacks. Differences, on purpose: time moves only with ``advance_to`` /
``advance_by``, and an error raised by a callback is re-raised to the caller
(the runtime dead-letters or logs it and keeps going); a ``process_timer``
error is raised once its round has fired.
"""
from __future__ import annotations

import asyncio
import math
from typing import Any, NamedTuple, Optional, Union

import msgpack

from .computation import Computation, Executor, Instance, _fake_clock, call
from .protocol import unpack_plain

__all__ = ["TestContext", "Output", "Timer"]

DEFAULT_PRODUCER = "test-producer"


class Output(NamedTuple):
    """One produce_record call, as a consumer would receive it (equal to a ``(stream, key, value)`` tuple)."""
    stream: str
    key: str
    value: Any


class Timer(NamedTuple):
    key: str
    at_ms: Union[int, float]


def _over_the_wire(value: Any, what: str) -> Any:
    try:
        return unpack_plain(msgpack.packb(value, use_bin_type=True))
    except Exception as err:
        raise TypeError(f"{what}: value is not msgpack-encodable: {type(err).__name__}: {err}") from None


class TestContext:
    """An in-memory harness around one instance of a computation."""

    __test__ = False  # not a pytest test class

    def __init__(self, computation: Union[Computation, type], index: int = 0, count: int = 1, now: Union[int, float] = 0,
                 instance_id: Optional[str] = None):
        comp = computation() if isinstance(computation, type) else computation
        if not isinstance(comp, Computation):
            raise TypeError("TestContext: expected a topo.Computation subclass or instance")
        if type(count) is not int or count < 1:
            raise ValueError(f"TestContext: count must be an integer >= 1, got {count!r}")
        if type(index) is not int or not 0 <= index < count:
            raise ValueError(f"TestContext: index must be an integer in 0..{count - 1}, got {index!r}")
        if not isinstance(now, (int, float)) or isinstance(now, bool) or not math.isfinite(now):
            raise ValueError("TestContext: now must be a finite number of ms since the epoch")
        self._clock = now
        self.logs: list = []
        self._exec = Executor(comp, Instance(index, count, "x"), on_log=self._on_log)
        name = self._exec.name
        self._exec.ctx.instance = Instance(index, count, instance_id or f"{name}-{index}-test")
        self.computation = comp
        self.name = name
        self.context = self._exec.ctx
        self._istreams = [s["stream"] for s in self._exec.metadata["istreams"]]
        self._outputs: list = []
        self._seqs: dict = {}
        self._init_ran = False
        self._started = False
        self._destroyed = False
        self._loop: Optional[asyncio.AbstractEventLoop] = None

    # --- what a test looks at -------------------------------------------------------------------

    def _on_log(self, entry: list) -> None:
        self.logs.append({"level": entry[0], "msg": entry[1], "fields": entry[2] if len(entry) > 2 else {}, "time": self._clock})

    @property
    def now(self) -> Union[int, float]:
        """The fake clock, ms since the epoch."""
        return self._clock

    @property
    def state(self):
        """The instance's keyed state."""
        return self._exec.state

    @property
    def timers(self) -> list:
        """Pending timers, earliest first, as ``Timer(key, at_ms)``."""
        return [Timer(k, at) for k, at in sorted(self._exec.timers.pending.items(), key=lambda e: e[1])]

    @property
    def outputs(self) -> list:
        """Everything produced since the last take_outputs(), in order, as ``Output(stream, key, value)``."""
        self._collect()
        return self._outputs

    def take_outputs(self) -> list:
        """Returns the outputs so far and clears them."""
        self._collect()
        out, self._outputs = self._outputs, []
        return out

    def _collect(self) -> None:
        types = self._exec.types
        for packed in self._exec.take_outputs():
            s, k, v = unpack_plain(packed)[:3]
            t = types.get(s) if types is not None else None
            self._outputs.append(Output(s, k, t.decode(v) if t is not None else v))  # a typed value as a consumer decodes it
        del self._exec.logs[:]

    # --- running callbacks ----------------------------------------------------------------------

    async def _run(self, fn, *args) -> None:
        token = _fake_clock.set(lambda: self._clock)
        try:
            await call(fn, *args)
        finally:
            _fake_clock.reset(token)
            self._collect()

    def _check(self, op: str) -> None:
        if self._destroyed:
            raise RuntimeError(f'{op}: the test context of "{self.name}" was destroyed')

    async def _run_init(self) -> None:
        self._init_ran = True
        await self._run(self.computation.init, self.context)
        self._started = True
        await self._fire_due(self._clock)

    async def _ensure_init(self) -> None:
        if not self._init_ran:
            await self._run_init()
        elif not self._started:
            raise RuntimeError(f'"{self.name}" did not start: its init raised')

    async def _fire_due(self, target: float) -> int:
        fired = 0
        e = self._exec
        while True:
            nxt = e.timers.next()
            if nxt is None or nxt > target:
                break
            if nxt > self._clock:
                self._clock = nxt
            failure = None
            for key, at in e.timers.take_due(nxt):
                if not e.has_timer_cb or e.timers.has(key):
                    continue
                try:
                    await self._run(self.computation.process_timer, self.context, key, at)
                    fired += 1
                except Exception as err:  # not retried; the rest of the round still fires
                    failure = failure or err
            if failure is not None:
                raise failure
        return fired

    async def ainit(self) -> None:
        """Runs init (optional: send/advance run it on first use). Raises if it already ran or raises itself."""
        self._check("init")
        if self._init_ran:
            raise RuntimeError(f'init of "{self.name}" already ran (send/advance_to/advance_by run it on first use)')
        await self._run_init()

    async def asend(self, stream: str, key: str, value: Any, timestamp: Optional[Union[int, float]] = None,
                    producer: str = DEFAULT_PRODUCER, trace_id: Optional[str] = None) -> None:
        """Hands one record to process_record (and then fires timers already due at ``now``)."""
        self._check("send")
        if stream not in self._istreams:
            raise ValueError(f'send: "{stream}" is not an istream of "{self.name}" (declared: {", ".join(self._istreams) or "none"})')
        if type(key) is not str:
            raise TypeError(f'send("{stream}"): key must be a str, got {type(key).__name__}')
        ts = self._clock if timestamp is None else timestamp
        if not isinstance(ts, (int, float)) or isinstance(ts, bool) or not math.isfinite(ts):
            raise ValueError(f'send("{stream}"): timestamp must be a finite number')
        await self._ensure_init()
        seq = self._seqs.get(stream, 0) + 1
        self._seqs[stream] = seq
        from .computation import Record
        what = f'send("{stream}", "{key}")'
        t = self._exec.types.get(stream) if self._exec.types is not None else None
        # A typed istream: the value as the consumer decodes it (bytes are taken as its encoding); a mismatch raises here.
        received = t.decode(t.encode(value, what)) if t is not None else _over_the_wire(value, what)
        rec = Record(stream, key, received, int(ts), seq, producer, trace_id)
        await self._run(self.computation.process_record, self.context, rec)
        await self._fire_due(self._clock)

    async def aadvance_to(self, ms: Union[int, float]) -> int:
        """Moves the fake clock to ``ms``, firing every timer due by then in time order. Returns how many fired."""
        op = f"advance_to({ms})"
        self._check(op)
        if not isinstance(ms, (int, float)) or isinstance(ms, bool) or not math.isfinite(ms):
            raise ValueError(f"{op}: target time must be a finite number")
        if ms < self._clock:
            raise ValueError(f"{op}: the clock is at {self._clock} and cannot go back to {ms}")
        await self._ensure_init()
        fired = await self._fire_due(ms)
        self._clock = ms
        return fired

    async def aadvance_by(self, ms: Union[int, float]) -> int:
        """advance_to(now + ms)."""
        if not isinstance(ms, (int, float)) or isinstance(ms, bool) or not math.isfinite(ms) or ms < 0:
            raise ValueError(f"advance_by: ms must be a finite number >= 0, got {ms!r}")
        return await self.aadvance_to(self._clock + ms)

    async def adestroy(self) -> None:
        """Runs destroy (when init ran). Idempotent; the context is unusable afterwards."""
        if self._destroyed:
            return
        self._destroyed = True
        try:
            if self._started:
                await self._run(self.computation.destroy, self.context)
        finally:
            self._close_loop()

    # --- the synchronous API --------------------------------------------------------------------

    def _sync(self, coro):
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            coro.close()
            raise RuntimeError("TestContext: inside a running event loop use the async methods "
                               "(await t.asend(...), t.aadvance_by(...), ...)")
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def _close_loop(self) -> None:
        if self._loop is not None and not self._loop.is_running():
            self._loop.close()
            self._loop = None

    def init(self) -> None:
        self._sync(self.ainit())

    def send(self, stream: str, key: str, value: Any, timestamp: Optional[Union[int, float]] = None,
             producer: str = DEFAULT_PRODUCER, trace_id: Optional[str] = None) -> None:
        self._sync(self.asend(stream, key, value, timestamp=timestamp, producer=producer, trace_id=trace_id))

    def advance_to(self, ms: Union[int, float]) -> int:
        return self._sync(self.aadvance_to(ms))

    def advance_by(self, ms: Union[int, float]) -> int:
        return self._sync(self.aadvance_by(ms))

    def destroy(self) -> None:
        if self._destroyed:
            return
        if self._loop is None and not self._started:
            self._destroyed = True
            return
        self._sync(self.adestroy())
