"""The hosted operator: ``python -m topo run file.py[:Class]`` (PROTOCOL.md "Hosted operators").

A TS worker starts this process per instance and speaks frames over fd 3
(requests) and fd 4 (replies). The operator runs on an asyncio event loop:
sync callbacks are called directly, ``async def`` callbacks are awaited, one
at a time. Between requests the loop keeps running, so tasks a computation
started (e.g. in ``init``) make progress.
"""
from __future__ import annotations

import asyncio
import inspect
import math
import mmap
import os
import struct
import sys
import time
from typing import Any, Optional

import msgpack

from . import __version__
from .computation import Computation, Executor, Instance, cut, error_text
from .protocol import (MAX_FRAME, MalformedBatch, ProtocolError, check_batch, decode_frame, is_trace_id,
                       partition_of, unpack_plain, write_all)

__all__ = ["Operator", "serve"]

PHASE_IDLE, PHASE_INIT, PHASE_TIMER, PHASE_RECORD, PHASE_DESTROY = 0, 1, 2, 3, 4
_LEN = struct.Struct(">I")
_PROGRESS = struct.Struct("<iiii")
_perf = time.perf_counter
_isawaitable = inspect.isawaitable


class _Progress:
    """The mmap'ed TOPO_PROGRESS_FILE: four little-endian int32 [phase, batch, index, tick]."""

    def __init__(self, path: str):
        fd = os.open(path, os.O_RDWR)
        try:
            if os.fstat(fd).st_size < 16:
                os.ftruncate(fd, 16)
            self.mm = mmap.mmap(fd, 16)
        finally:
            os.close(fd)
        self.tick = 0
        self.pack_into = _PROGRESS.pack_into

    def note(self, phase: int, batch: int = -1, index: int = -1) -> None:
        self.tick = (self.tick + 1) & 0x7FFFFFFF
        self.pack_into(self.mm, 0, phase, batch, index, self.tick)


class _FrameReader(asyncio.Protocol):
    """Collects request frames from fd 3 into a queue; None marks end of file."""

    def __init__(self, queue: asyncio.Queue, on_eof):
        self.queue = queue
        self.buf = bytearray()
        self.on_eof = on_eof

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        while len(buf) >= 4:
            (n,) = _LEN.unpack_from(buf)
            if not 1 <= n <= MAX_FRAME:
                self.queue.put_nowait(ProtocolError(f"frame length {n} out of range (1..{MAX_FRAME})"))
                buf.clear()
                return
            if len(buf) < 4 + n:
                return
            body = bytes(buf[4:4 + n])
            del buf[:4 + n]
            self.queue.put_nowait(body)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        if self.buf:
            self.queue.put_nowait(ProtocolError("end of file inside a frame"))
        self.queue.put_nowait(None)
        self.on_eof()


def _packer():
    return msgpack.Packer(use_bin_type=True, autoreset=True)


class Operator:
    """Serves the operator protocol for one computation."""

    def __init__(self, comp: Computation, out_fd: int, progress_path: Optional[str] = None):
        self.comp = comp
        self.out_fd = out_fd
        self.exec: Optional[Executor] = None
        self.progress = _Progress(progress_path) if progress_path else None
        self.busy = False
        self.packer = _packer()
        from .metadata import validate_metadata
        self.metadata = validate_metadata(comp.metadata())

    # --- output ---------------------------------------------------------------------------------

    def send(self, msg: dict) -> None:
        body = self.packer.pack(msg)
        if len(body) > MAX_FRAME:
            raise ValueError(f"a {msg.get('op')} reply of {len(body)} bytes is over the {MAX_FRAME}-byte frame limit")
        write_all(self.out_fd, _LEN.pack(len(body)) + body)

    def hello(self) -> None:
        self.send({"op": "hello", "protocol": 1, "metadata": self.metadata, "sdk": f"topo-python {__version__}"})

    def completion(self, rid: int, records: int, batches: list, failures: list, busy_ms: float, stopped: bool = False,
                   bad_traces: int = 0) -> None:
        e = self.exec
        p = self.packer
        outs = e.outputs
        logs = e.logs
        nxt = e.timers.next()
        if nxt is not None and type(nxt) is not int:
            nxt = math.ceil(nxt)  # nextTimerAt is an int: a timer at 100.5 is due at 101
        n = 10 + (1 if logs else 0) + (1 if stopped else 0) + (1 if bad_traces else 0)
        parts = [p.pack_map_header(n), p.pack("op"), p.pack("completion"), p.pack("id"), p.pack(rid),
                 p.pack("outputs"), p.pack_array_header(len(outs))]
        parts += outs
        parts += [p.pack("records"), p.pack(records), p.pack("batches"), p.pack(batches),
                  p.pack("failures"), p.pack(failures), p.pack("nextTimerAt"), p.pack(nxt),
                  p.pack("stateKeys"), p.pack(len(e.state)), p.pack("timers"), p.pack(len(e.timers)),
                  p.pack("busyMs"), p.pack(float(busy_ms))]
        if logs:
            parts += [p.pack("logs"), p.pack(logs)]
        if stopped:
            parts += [p.pack("stopped"), p.pack(True)]
        if bad_traces:
            parts += [p.pack("badTraces"), p.pack(bad_traces)]
        body = b"".join(parts)
        del outs[:]
        del logs[:]
        if len(body) > MAX_FRAME:
            self.error(rid, f"the completion is {len(body)} bytes, over the {MAX_FRAME}-byte frame limit")
            return
        write_all(self.out_fd, _LEN.pack(len(body)) + body)

    def error(self, rid: Any, message: str) -> None:
        self.send({"op": "error", "id": rid if type(rid) is int else 0, "error": cut(message)})

    # --- requests -------------------------------------------------------------------------------

    async def handle(self, msg: dict) -> bool:
        """Handles one request; False when the operator must exit."""
        op = msg.get("op")
        rid = msg.get("id")
        if type(rid) is not int or rid < 0:
            raise ProtocolError(f"request {op!r} without a uint id")
        if op == "activate":
            if self.exec is None:
                self.error(rid, "activate before init")
                return True
            await self.activate(rid, msg)
        elif op == "init":
            await self.init(rid, msg)
        elif op == "snapshot":
            self.snapshot(rid, msg)
        elif op == "destroy":
            await self.destroy(rid)
            return False
        else:
            self.error(rid, f"unknown operator request op {op!r}")
        return True

    async def init(self, rid: int, msg: dict) -> None:
        inst = msg.get("instance") or {}
        try:
            instance = Instance(int(inst.get("index", 0)), int(inst.get("count", 1)), str(inst.get("id", "")))
            e = Executor(self.comp, instance)
            e.state.restore(msg.get("state") or [])
            e.timers.restore(msg.get("timers") or [])
        except Exception as err:
            self.error(rid, f"init: cannot restore: {error_text(err)}")
            return
        self.exec = e
        failures = []
        t0 = _perf()
        if msg.get("runInit", True):
            if self.progress:
                self.progress.note(PHASE_INIT)
            try:
                r = self.comp.init(e.ctx)
                if r is not None and _isawaitable(r):
                    await r
            except Exception as err:
                failures.append({"where": "init", "error": error_text(err)})
            if self.progress:
                self.progress.note(PHASE_IDLE)
        self.completion(rid, 0, [], failures, (_perf() - t0) * 1000)

    async def activate(self, rid: int, msg: dict) -> None:
        e = self.exec
        ctx = e.ctx
        comp = self.comp
        prog = self.progress
        stop = msg.get("stopOnFailure") is True
        failures: list = []
        items: list = []
        records = 0
        bad_traces = 0
        busy = 0.0
        t0 = _perf()
        if msg.get("timers") is True:
            now = msg.get("now")
            if type(now) not in (int, float):
                now = time.time() * 1000
            timers = e.timers
            due = timers.take_due(now)
            if due:
                pt = comp.process_timer
                for key, at in due:
                    if not e.has_timer_cb or timers.has(key):
                        continue  # set again by an earlier callback of this round: the new timer replaces it
                    if prog:
                        prog.note(PHASE_TIMER)
                    try:
                        r = pt(ctx, key, at)
                        if r is not None and _isawaitable(r):
                            await r
                    except Exception as err:
                        failures.append({"where": "processTimer", "error": error_text(err), "timer": key})
                        if stop:
                            return self._done(rid, records, items, failures, t0, True, bad_traces)
        batches = msg.get("batches") or []
        types = e.types
        pr = comp.process_record
        Rec = _Record
        _int = int
        if prog is not None:
            mm, pack_into, tick = prog.mm, prog.pack_into, prog.tick
        for b, item in enumerate(batches):
            try:
                stream = item["stream"]
                data = item["data"]
                if type(data) is not bytes:
                    raise MalformedBatch("not msgpack: data is not a bin")
                try:
                    raw = unpack_plain(data)
                except Exception as err:
                    raise MalformedBatch(f"not msgpack: {type(err).__name__}: {err}") from None
                src, recs = check_batch(raw)
            except MalformedBatch as err:
                items.append(None)
                failures.append({"where": "decode", "batch": b, "error": cut(str(err))})
                continue
            except Exception as err:  # an item that is not {stream, data}
                items.append(None)
                failures.append({"where": "decode", "batch": b, "error": f"bad batch item: {error_text(err)}"})
                continue
            typed = types.get(stream) if types is not None else None
            if typed is not None:
                recs = self._decode_typed(typed, recs)
            i = 0
            for r in recs:
                if r.__class__ is _Mismatch:
                    # A typed record that does not decode: not handed to process_record; the worker
                    # dead-letters it as a type mismatch. It is not the computation's failure: no stop.
                    failures.append({"where": "type", "batch": b, "index": i, "error": r.error})
                    i += 1
                    continue
                if prog is not None:
                    tick = (tick + 1) & 0x7FFFFFFF
                    pack_into(mm, 0, 3, b, i, tick)
                trace = r[4] if len(r) == 5 else None
                if trace is not None and not is_trace_id(trace):
                    trace = None  # not a well-formed trace id: dropped and counted (PROTOCOL.md, Traces)
                    bad_traces += 1
                rec = Rec(stream, r[0], r[1], _int(r[2]), _int(r[3]), src, trace)
                ctx._trace = trace  # what process_record produces carries the record's trace
                try:
                    res = pr(ctx, rec)
                    if res is not None and _isawaitable(res):
                        await res
                except Exception as err:
                    failures.append({"where": "processRecord", "batch": b, "index": i, "error": error_text(err)})
                    if stop:
                        ctx._trace = None
                        items.append([src, i + 1])
                        if prog is not None:
                            prog.tick = tick
                        return self._done(rid, records + i + 1, items, failures, t0, True, bad_traces)
                ctx._trace = None
                i += 1
            if prog is not None:
                prog.tick = tick
            records += i
            items.append([src, i])
        self._done(rid, records, items, failures, t0, False, bad_traces)

    @staticmethod
    def _decode_typed(typed, recs: list) -> list:
        """The records of a typed istream with their values decoded; a _Mismatch for one that does not decode."""
        from .typed import TypeMismatch
        out = []
        for r in recs:
            try:
                r = [r[0], typed.decode(r[1])] + r[2:]
            except TypeMismatch as err:
                r = _Mismatch(cut(str(err)))
            out.append(r)
        return out

    def _done(self, rid, records, items, failures, t0, stopped, bad_traces=0) -> None:
        if self.progress:
            self.progress.note(PHASE_IDLE)
        self.completion(rid, records, items, failures, (_perf() - t0) * 1000, stopped, bad_traces)

    def snapshot(self, rid: int, msg: dict) -> None:
        e = self.exec
        if e is None:
            self.send({"op": "snapshot", "id": rid, "state": [], "timers": []})
            return
        parts = msg.get("partitions")
        if parts is None:
            state = e.state.entries()
            timers = e.timers.entries()
        else:
            want = set(parts)
            state = [[k, v] for k, v in e.state.items() if partition_of(k) in want]
            timers = [[k, at] for k, at in e.timers.pending.items() if partition_of(k) in want]
        try:
            self.send({"op": "snapshot", "id": rid, "state": state, "timers": timers})
        except (TypeError, ValueError, OverflowError) as err:
            self.error(rid, f"snapshot: state will not encode: {error_text(err)}")

    async def destroy(self, rid: int) -> None:
        e = self.exec
        if e is None:
            self.send({"op": "completion", "id": rid, "outputs": [], "records": 0, "batches": [], "failures": [],
                       "nextTimerAt": None, "stateKeys": 0, "timers": 0, "busyMs": 0.0})
            return
        failures = []
        t0 = _perf()
        if self.progress:
            self.progress.note(PHASE_DESTROY)
        try:
            r = self.comp.destroy(e.ctx)
            if r is not None and _isawaitable(r):
                await r
        except Exception as err:
            failures.append({"where": "destroy", "error": error_text(err)})
        if self.progress:
            self.progress.note(PHASE_IDLE)
        self.completion(rid, 0, [], failures, (_perf() - t0) * 1000)


from .computation import Record as _Record  # noqa: E402  (bound once for the hot loop)


class _Mismatch:
    __slots__ = ("error",)

    def __init__(self, error: str):
        self.error = error


async def serve(comp: Computation, in_fd: int, out_fd: int, progress_path: Optional[str] = None) -> int:
    """Writes hello, then serves requests until destroy or end of file. Returns the exit status."""
    op = Operator(comp, out_fd, progress_path)
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def on_eof() -> None:
        if op.busy:
            # The worker is gone while an async callback is pending: nobody will read the reply.
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
            os._exit(0)

    pipe = os.fdopen(in_fd, "rb", buffering=0, closefd=False)
    transport, _ = await loop.connect_read_pipe(lambda: _FrameReader(queue, on_eof), pipe)
    try:
        op.hello()
        while True:
            body = await queue.get()
            if body is None:
                return 0
            if isinstance(body, Exception):
                raise body
            msg = decode_frame(body)
            op.busy = True
            try:
                go_on = await op.handle(msg)
            finally:
                op.busy = False
            if not go_on:
                return 0
    except BrokenPipeError:
        return 0
    finally:
        transport.close()
