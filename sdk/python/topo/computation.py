"""The computation contract in Python, mirroring sdk/computation.ts.

Subclass ``Computation``, return a ``Metadata`` from ``metadata()`` and define
the callbacks you need. Each callback may be a plain function or ``async def``;
the runtime awaits it, and never runs two callbacks of one instance at once.
"""
from __future__ import annotations

import contextvars
import inspect
import logging
import math
import time
import traceback
from typing import Any, Callable, Iterator, NamedTuple, Optional

import msgpack

from .metadata import Metadata, validate_metadata
from .protocol import partition_of

__all__ = ["Computation", "Record", "Context", "KeyedState", "Instance", "now_ms", "Executor", "load_error"]

_fake_clock: contextvars.ContextVar = contextvars.ContextVar("topo_fake_clock", default=None)


def now_ms() -> int:
    """Milliseconds since the Unix epoch. Inside ``topo.testing.TestContext`` it is the fake clock."""
    fake = _fake_clock.get()
    if fake is not None:
        return fake()
    return time.time_ns() // 1_000_000


class Instance(NamedTuple):
    """This instance: its index among ``count`` instances, and its unique id."""
    index: int
    count: int
    id: str


class Record:
    """One input record, as handed to ``process_record``."""

    __slots__ = ("stream", "key", "value", "timestamp", "seq", "producer", "trace_id")

    def __init__(self, stream: str, key: str, value: Any, timestamp: int, seq: int, producer: str, trace_id: Optional[str] = None):
        self.stream = stream          #: the istream it arrived on
        self.key = key
        self.value = value            #: any msgpack value, as the producer gave it
        self.timestamp = timestamp    #: ms since the epoch, set by the producer
        self.seq = seq                #: producer sequence on that stream
        self.producer = producer      #: the producer's id
        self.trace_id = trace_id

    def __repr__(self) -> str:
        return (f"Record(stream={self.stream!r}, key={self.key!r}, value={self.value!r}, timestamp={self.timestamp}, "
                f"seq={self.seq}, producer={self.producer!r}, trace_id={self.trace_id!r})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and all(getattr(self, a) == getattr(other, a) for a in Record.__slots__)


class Computation:
    """Base class of a computation. ``metadata()`` is required; ``init``, ``process_record``,
    ``process_timer`` and ``destroy`` are optional (a computation with istreams must define
    ``process_record``). Any of them may be ``async def``."""

    def metadata(self) -> Metadata:
        raise NotImplementedError(f"{type(self).__name__}.metadata() must return a topo.Metadata")

    def init(self, ctx: "Context") -> Any:
        """Called once before any record or timer. Raising fails the deploy (INIT_FAILED)."""

    def process_record(self, ctx: "Context", record: Record) -> Any:
        """Called for each input record, in arrival order per producer and partition. Raising
        dead-letters the record; the computation keeps running."""
        raise NotImplementedError(f"{type(self).__name__} reads streams but defines no process_record")

    def process_timer(self, ctx: "Context", key: str, time: int) -> Any:
        """Called when a timer set with ``ctx.set_timer(key, at_ms)`` is due; ``time`` is its at_ms."""

    def destroy(self, ctx: "Context") -> Any:
        """Called once when the instance stops. Errors are logged."""


def _overrides(comp: Computation, name: str) -> bool:
    return getattr(type(comp), name, None) is not getattr(Computation, name)


def load_error(comp: Any) -> Optional[str]:
    """Why ``comp`` cannot run (None when it can); also validates its metadata (InvalidMetadataError)."""
    if not isinstance(comp, Computation):
        return f"{comp!r} is not a topo.Computation"
    md = comp.metadata()
    norm = validate_metadata(md)
    if norm["istreams"] and not _overrides(comp, "process_record"):
        return (f'computation "{norm["name"]}" ({type(comp).__name__}) reads '
                f'{", ".join(s["stream"] for s in norm["istreams"])} but defines no process_record')
    for cb in ("init", "process_record", "process_timer", "destroy"):
        if not callable(getattr(comp, cb, None)):
            return f'computation "{norm["name"]}": {cb} must be a method'
    return None


_packer = msgpack.Packer(use_bin_type=True)
_pack = _packer.pack


def _check_encodable(value: Any, what: str) -> None:
    try:
        _pack(value)
    except Exception as err:
        raise TypeError(f"{what}: value is not msgpack-encodable: {type(err).__name__}: {err}") from None


class KeyedState:
    """Keyed state of one instance (dict-like). Keys are str; values must be msgpack-encodable
    (checked by ``set``): state is snapshotted and handed to the next version on a hot swap."""

    __slots__ = ("_map",)

    def __init__(self) -> None:
        self._map: dict = {}

    def get(self, key: str, default: Any = None) -> Any:
        return self._map.get(key, default)

    def set(self, key: str, value: Any) -> None:
        if type(key) is not str:
            raise TypeError(f"state: key must be a str, got {type(key).__name__}")
        t = type(value)
        if not (t is int or t is str or t is float or t is bool or value is None) or (t is int and not -(1 << 63) <= value < (1 << 64)):
            _check_encodable(value, f'state["{key}"]')
        self._map[key] = value

    __setitem__ = set

    def __getitem__(self, key: str) -> Any:
        return self._map[key]

    def delete(self, key: str) -> bool:
        """Removes a key; True when it existed."""
        return self._map.pop(key, _MISSING) is not _MISSING

    def __delitem__(self, key: str) -> None:
        del self._map[key]

    def pop(self, key: str, default: Any = None) -> Any:
        return self._map.pop(key, default)

    def has(self, key: str) -> bool:
        return key in self._map

    def __contains__(self, key: object) -> bool:
        return key in self._map

    def keys(self):
        return self._map.keys()

    def values(self):
        return self._map.values()

    def items(self):
        return self._map.items()

    def __iter__(self) -> Iterator[str]:
        return iter(self._map)

    def __len__(self) -> int:
        return len(self._map)

    @property
    def size(self) -> int:
        return len(self._map)

    def clear(self) -> None:
        self._map.clear()

    def to_dict(self) -> dict:
        return dict(self._map)

    def __repr__(self) -> str:
        return f"KeyedState({self._map!r})"

    def entries(self) -> list:
        return [[k, v] for k, v in self._map.items()]

    def restore(self, entries: Any) -> None:
        m = {}
        for e in entries:
            k, v = e
            if type(k) is not str:
                raise TypeError(f"state entry key must be a str, got {type(k).__name__}")
            m[k] = v
        self._map = m


_MISSING = object()


class TimerTable:
    """Pending timers: one per key."""

    __slots__ = ("pending", "_next", "_dirty")

    def __init__(self) -> None:
        self.pending: dict = {}
        self._next: Optional[float] = None
        self._dirty = False

    def set(self, key: str, at_ms: Any) -> None:
        if type(key) is not str:
            raise TypeError(f"set_timer: key must be a str, got {type(key).__name__}")
        t = type(at_ms)
        if t is float:
            if not math.isfinite(at_ms):
                raise ValueError(f'set_timer("{key}"): at_ms must be a finite number of ms since the epoch, got {at_ms!r}')
            if at_ms.is_integer():
                at_ms = int(at_ms)
        elif t is not int:
            raise TypeError(f'set_timer("{key}"): at_ms must be a number of ms since the epoch, got {type(at_ms).__name__}')
        old = self.pending.get(key)
        self.pending[key] = at_ms
        if not self._dirty:
            if old is not None and old == self._next:
                self._dirty = True
            elif self._next is None or at_ms < self._next:
                self._next = at_ms

    def has(self, key: str) -> bool:
        return key in self.pending

    def next(self) -> Optional[float]:
        """Earliest pending time, or None."""
        if self._dirty:
            self._next = min(self.pending.values()) if self.pending else None
            self._dirty = False
        return self._next

    def take_due(self, now: float) -> list:
        """Removes and returns ``[(key, at)]`` due at ``now``, earliest first."""
        nxt = self.next()
        if nxt is None or nxt > now:
            return []
        due = [(k, at) for k, at in self.pending.items() if at <= now]
        for k, _ in due:
            del self.pending[k]
        self._dirty = True
        due.sort(key=lambda e: e[1])
        return due

    def __len__(self) -> int:
        return len(self.pending)

    def entries(self) -> list:
        return [[k, at] for k, at in self.pending.items()]

    def restore(self, entries: Any) -> None:
        self.pending = {}
        self._next = None
        self._dirty = False
        for e in entries:
            k, at = e
            self.set(k, at)


# --- logging ------------------------------------------------------------------------------------

_STD_ATTRS = set(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__) | {"message", "asctime", "taskName"}


def _level_name(levelno: int) -> str:
    if levelno >= logging.ERROR:
        return "error"
    if levelno >= logging.WARNING:
        return "warn"
    if levelno >= logging.INFO:
        return "info"
    return "debug"


def _plain(value: Any) -> Any:
    try:
        _pack(value)
        return value
    except Exception:
        return repr(value)


class _Collect(logging.Handler):
    """Turns log records into ``[level, msg, fields]`` entries."""

    def __init__(self, sink: list, on_entry: Optional[Callable[[list], None]] = None):
        super().__init__(logging.DEBUG)
        self.sink = sink
        self.on_entry = on_entry

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = record.getMessage()
        except Exception as err:  # a bad format string must not break the callback
            msg = f"{record.msg!r} (log formatting failed: {err})"
        fields = {k: _plain(v) for k, v in record.__dict__.items() if k not in _STD_ATTRS}
        if record.exc_info and record.exc_info[1] is not None:
            e = record.exc_info[1]
            fields["err"] = {"type": type(e).__name__, "message": str(e),
                             "stack": "".join(traceback.format_exception(*record.exc_info))}
        entry = [_level_name(record.levelno), msg, fields] if fields else [_level_name(record.levelno), msg]
        self.sink.append(entry)
        if self.on_entry is not None:
            self.on_entry(entry)


def make_logger(name: str, sink: list, on_entry: Optional[Callable[[list], None]] = None) -> logging.Logger:
    """A standalone stdlib Logger (not in the logging tree, so it does not propagate to the root logger)
    whose records are collected into ``sink``. Structured fields go in ``extra={...}``."""
    log = logging.Logger(name, logging.DEBUG)
    log.addHandler(_Collect(sink, on_entry))
    log.propagate = False
    return log


# --- the context and the executor ---------------------------------------------------------------

class Context:
    """What a computation can do: ``produce_record``, ``set_timer``, ``state``, ``log``,
    and who it is: ``name``, ``instance`` (index, count, id)."""

    __slots__ = ("name", "instance", "state", "log", "_ostreams", "_out", "_timers", "_declared", "_types", "_trace")

    def __init__(self, name: str, instance: Instance, ostreams: list, out: list, timers: TimerTable, log: logging.Logger,
                 types: Any = None):
        self.name = name
        self.instance = instance
        self.state = KeyedState()
        self.log = log
        self._ostreams = frozenset(ostreams)
        self._declared = ", ".join(ostreams) or "none"
        self._out = out
        self._timers = timers
        self._types = types  # topo.typed.StreamTypes when some stream is typed
        # The trace of the record process_record is handling (PROTOCOL.md, Traces), set by the operator:
        # what it produces carries it. None in timers, init and destroy.
        self._trace: Optional[str] = None

    def produce_record(self, stream: str, key: str, value: Any) -> None:
        """Emits a record on one of the declared ostreams. Never blocks."""
        if stream not in self._ostreams:
            raise ValueError(f'produce_record: "{stream}" is not an ostream of "{self.name}" (declared: {self._declared})')
        if type(key) is not str:
            raise TypeError(f'produce_record("{stream}"): key must be a str, got {type(key).__name__}')
        if self._types is not None:
            t = self._types.get(stream)
            if t is not None:  # a typed stream: its protobuf encoding travels as bin (TypeError when it does not fit)
                value = t.encode(value, f'produce_record("{stream}", "{key}")')
        try:
            trace = self._trace
            self._out.append(_pack([stream, key, value] if trace is None else [stream, key, value, trace]))
        except Exception as err:
            raise TypeError(f'produce_record("{stream}", "{key}"): value is not msgpack-encodable: {type(err).__name__}: {err}') from None

    def set_timer(self, key: str, at_ms: float) -> None:
        """Asks for ``process_timer(ctx, key, at_ms)`` at or after ``at_ms``. One timer per key: setting it again replaces it."""
        self._timers.set(key, at_ms)


def cut(text: str, limit: int = 4096) -> str:
    """At most ``limit`` UTF-8 bytes, cut on a character boundary (PROTOCOL.md: error strings)."""
    if len(text) * 4 <= limit:
        return text
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    tail = " … (truncated)".encode("utf-8")
    return data[: limit - len(tail)].decode("utf-8", "ignore") + tail.decode("utf-8")


def error_text(err: BaseException, limit: int = 4096) -> str:
    """``Type: message`` of an exception, at most ``limit`` UTF-8 bytes."""
    s = str(err)
    return cut(f"{type(err).__name__}: {s}" if s else type(err).__name__, limit)


class Executor:
    """One instance of a computation: its context, keyed state, timers, and collected outputs
    (msgpack-encoded ``[stream, key, value]`` items) and logs. Shared by the operator and the test kit."""

    def __init__(self, comp: Computation, instance: Instance, on_log: Optional[Callable[[list], None]] = None):
        why = load_error(comp)
        if why:
            raise TypeError(why)
        self.comp = comp
        self.metadata = validate_metadata(comp.metadata())
        self.name = self.metadata["name"]
        self.outputs: list = []
        self.logs: list = []
        self.timers = TimerTable()
        self.log = make_logger(f"topo.{self.name}.{instance.index}", self.logs, on_log)
        self.types = None
        if self.metadata.get("types"):
            from .typed import StreamTypes  # needs protobuf: imported only when a stream is typed
            self.types = StreamTypes.of(self.metadata)
        self.ctx = Context(self.name, instance, self.metadata["ostreams"], self.outputs, self.timers, self.log, self.types)
        self.state = self.ctx.state
        self.has_timer_cb = _overrides(comp, "process_timer")
        self.is_source = not self.metadata["istreams"]

    def take_outputs(self) -> list:
        out = self.outputs[:]
        del self.outputs[:]
        return out

    def take_logs(self) -> list:
        out = self.logs[:]
        del self.logs[:]
        return out


async def call(fn: Callable, *args: Any) -> None:
    """Calls a callback and awaits it when it returned an awaitable."""
    r = fn(*args)
    if r is not None and inspect.isawaitable(r):
        await r
