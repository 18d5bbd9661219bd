"""Bridges: producers and consumers outside the controller (PROTOCOL.md, "Bridges"), with nats-py.

A registered :class:`Producer` is listed by the controller, renews its lease by heartbeat and
answers the ``pause`` / ``resume`` control ops on ``topo.bridge.ctl.<id>`` like an upstream
instance: a hot swap (scale, fusion change) of a computation reading one of its streams holds its
output, so nothing is lost. It batches per partition, partitions by key hash when a consumer is
keyed, and keeps credit books per consumer group (from ``comp.*`` and ``consumer.*`` in KV
``topo_state``); ``await produce()`` waits while a group owes more than the window, or while held
output is full::

    nc = await nats.connect(url)
    p = await Producer.start(nc, ["clicks"])
    await p.produce("clicks", "user-1", {"page": "/"})
    await p.close()

A registered :class:`Consumer` joins a consumer group on one stream, so producers count it in flow
control; each record is credited once the iteration asks for the next one::

    c = await Consumer.start(nc, "counts", group="dashboard")
    async for r in c:
        print(r.key, r.value)
    await c.close()            # leaves the group (its lease would end it too)
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass
from typing import Any, Optional

import msgpack

from .protocol import PARTITIONS, MalformedBatch, decode_batch, encode_batch, partition_of

__all__ = ["Producer", "Consumer", "BridgeRecord", "BridgeError", "DEFAULT_WINDOW", "HOLD_LIMIT"]

log = logging.getLogger("topo.bridge")

MAX_BATCH_RECORDS = 256
LINGER_S = 0.001
DEFAULT_WINDOW = 65_536
STALL_RESET_S = 5.0
MAX_BATCH_BYTES = 512 * 1024
HOLD_LIMIT = 16_384
CREDIT_EVERY = 4096
CREDIT_FLUSH_S = 0.008
DEFAULT_PAUSE_LEASE_MS = 5000
MAX_SAFE = 2 ** 53 - 1

ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
GROUP = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}(#[0-9]{1,3})?")
GROUPINGS = ("shuffle", "key", "broadcast")

REGISTER = "topo.bridge.register"
UNREGISTER = "topo.bridge.unregister"


def heartbeat_subject(bridge_id: str) -> str:
    return f"topo.bridge.hb.{bridge_id}"


def control_subject(bridge_id: str) -> str:
    return f"topo.bridge.ctl.{bridge_id}"


def credit_subject(producer_id: str) -> str:
    return f"topo.fc.{producer_id}"


def data_subject(stream: str, partition: int) -> str:
    return f"topo.data.{stream}.{partition}"


class BridgeError(Exception):
    """A refusal from the controller or a bad argument: ``code`` is the protocol error code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _now_ms() -> int:
    return int(time.time() * 1000)


def _check_id(what: str, v: Any) -> None:
    if not isinstance(v, str) or not ID.fullmatch(v):
        raise BridgeError("BAD_REQUEST", f'invalid {what} {v!r}: use 1-128 letters, digits, "_" or "-"')


def _check_name(what: str, v: Any) -> None:
    if not isinstance(v, str) or not NAME.fullmatch(v):
        raise BridgeError("BAD_REQUEST", f'invalid {what} name {v!r}: must start with a letter and contain only letters, digits, "_" or "-"')


def _is_count(v: Any) -> bool:
    return type(v) is int and 0 <= v <= MAX_SAFE


async def _call(nc, subject: str, body: Any, timeout: float = 10.0) -> dict:
    """JSON request/reply with the protocol's Reply envelope; ok:false raises BridgeError."""
    msg = await nc.request(subject, json.dumps(body).encode(), timeout=timeout)
    reply = json.loads(msg.data.decode())
    if not reply.get("ok"):
        err = reply.get("error") or {}
        raise BridgeError(str(err.get("code", "TOPO_ERROR")), str(err.get("message", "request failed")))
    return reply


def _ok(**fields) -> bytes:
    return json.dumps({"ok": True, **fields}).encode()


def _err(code: str, message: str) -> bytes:
    return json.dumps({"ok": False, "error": {"code": code, "message": message}}).encode()


# --- the consumer groups of each stream (PROTOCOL.md, flow control) -----------------------------

class _TopologyView:
    """Watches ``comp.>`` and ``consumer.>`` in ``topo_state``: the consumer groups of each stream."""

    def __init__(self):
        self.comps: dict = {}
        self.bridges: dict = {}
        self.by_stream: dict = {}
        self.version = 0
        self._watchers: list = []
        self._tasks: list = []

    def consumers_of(self, stream: str) -> tuple:
        return self.by_stream.get(stream, ((), False))

    def _rebuild(self) -> None:
        nxt: dict = {}

        def add(stream, group, keyed):
            groups, k = nxt.get(stream, ([], False))
            if group not in groups:
                groups.append(group)
            nxt[stream] = (groups, k or keyed)

        for c in self.comps.values():
            istreams = list(c["metadata"]["istreams"]) + (list(c["canary"]["metadata"]["istreams"]) if c.get("canary") else [])
            for s in istreams:
                if s["grouping"] == "broadcast":
                    for i in range(c["instances"]):
                        add(s["stream"], f"{c['name']}#{i}", False)
                else:
                    add(s["stream"], c["name"], s["grouping"] == "key")
        for b in self.bridges.values():
            for m in b["members"]:
                add(b["stream"], f"{b['group']}#{m['index']}" if b["grouping"] == "broadcast" else b["group"], b["grouping"] == "key")
        self.by_stream = {s: (tuple(g), k) for s, (g, k) in nxt.items()}
        self.version += 1

    @staticmethod
    def _valid_comp(name: str, r: Any) -> bool:
        try:
            if r["name"] != name or not NAME.fullmatch(name) or not isinstance(r["instances"], int) or r["instances"] < 1:
                return False
            for m in [r["metadata"]] + ([r["canary"]["metadata"]] if r.get("canary") else []):
                for s in m["istreams"]:
                    if not NAME.fullmatch(s["stream"]) or s["grouping"] not in GROUPINGS:
                        return False
            return True
        except (KeyError, TypeError):
            return False

    @staticmethod
    def _valid_bridge(group: str, r: Any) -> bool:
        try:
            return (r["group"] == group and bool(NAME.fullmatch(group)) and bool(NAME.fullmatch(r["stream"]))
                    and r["grouping"] in GROUPINGS and isinstance(r["members"], list)
                    and all(ID.fullmatch(m["id"]) and type(m["index"]) is int and 0 <= m["index"] <= 999 for m in r["members"]))
        except (KeyError, TypeError):
            return False

    def _apply(self, table: dict, validate, prefix: str, e) -> None:
        name = e.key[len(prefix):]
        if e.operation in ("DEL", "PURGE") or not e.value:
            table.pop(name, None)
        else:
            try:
                r = json.loads(e.value.decode())
            except ValueError:
                r = None
            if not validate(name, r):
                log.error("KV %s in topo_state is not valid; skipping it", e.key[:200])
                return
            table[name] = r
        self._rebuild()

    async def watch(self, js) -> None:
        kv = await js.key_value("topo_state")
        for key, table, validate, prefix in (("comp.>", self.comps, self._valid_comp, "comp."),
                                             ("consumer.>", self.bridges, self._valid_bridge, "consumer.")):
            w = await kv.watch(key)
            self._watchers.append(w)
            loaded = asyncio.get_running_loop().create_future()

            async def follow(w=w, table=table, validate=validate, prefix=prefix, loaded=loaded):
                async for e in w:
                    if e is None:
                        if not loaded.done():
                            loaded.set_result(None)
                        continue
                    self._apply(table, validate, prefix, e)

            self._tasks.append(asyncio.ensure_future(follow()))
            try:
                await asyncio.wait_for(asyncio.shield(loaded), 2.0)
            except asyncio.TimeoutError:
                pass

    async def stop(self) -> None:
        for w in self._watchers:
            try:
                await w.stop()
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        for t in self._tasks:
            t.cancel()


# --- producer -------------------------------------------------------------------------------------

class _StreamOut:
    """Output on one stream: the TS runtime's StreamProducer (runtime/worker/producer.py), in Python."""

    def __init__(self, owner: "Producer", stream: str):
        self.owner = owner
        self.stream = stream
        self.buffers: list = [[] for _ in range(PARTITIONS + 1)]
        self.pending = 0
        self.seq = 0
        self.bseq = 0
        self.rotate = 0
        self.owed: dict = {}
        self.view_version = -1
        self.groups: tuple = ()
        self.keyed = False
        self.last_credit_at = time.monotonic()
        self.held = False
        self.blocked_now = False
        self.seq_by_partition = [0] * PARTITIONS
        self.at_by_partition = [0.0] * PARTITIONS
        self.published = 0
        self.linger: Optional[asyncio.TimerHandle] = None

    def refresh(self) -> None:
        view = self.owner.view
        if self.view_version == view.version:
            return
        self.view_version = view.version
        self.groups, self.keyed = view.consumers_of(self.stream)
        for g in [g for g in self.owed if g not in self.groups]:
            del self.owed[g]

    def credit_blocked(self) -> bool:
        w = self.owner.window
        self.blocked_now = any(n > w for n in self.owed.values())
        return self.blocked_now

    def can_publish(self) -> bool:
        return not self.held and not self.credit_blocked()

    def is_blocked(self) -> bool:
        if self.held:
            return self.pending >= HOLD_LIMIT
        return self.credit_blocked()

    def produce(self, key: str, value: Any, trace: Optional[str]) -> None:
        self.refresh()
        self.seq += 1
        rec = [key, value, _now_ms(), self.seq] + ([trace] if trace is not None else [])
        idx = partition_of(key) if self.keyed else PARTITIONS
        buf = self.buffers[idx]
        buf.append(rec)
        self.pending += 1
        if len(buf) >= MAX_BATCH_RECORDS and self.can_publish():
            self.publish_buffer(idx)
        elif self.linger is None:
            self.linger = asyncio.get_running_loop().call_later(LINGER_S, self.on_linger)

    def on_linger(self) -> None:
        self.linger = None
        self.flush()

    def flush(self) -> bool:
        if self.pending == 0:
            return True
        for i in range(PARTITIONS + 1):
            while self.buffers[i]:
                if self.held or self.credit_blocked():
                    return False
                self.publish_buffer(i)
        return True

    def publish_buffer(self, idx: int) -> None:
        self.refresh()
        buf = self.buffers[idx]
        recs = buf[:MAX_BATCH_RECORDS]
        del buf[:MAX_BATCH_RECORDS]
        self.pending -= len(recs)
        if idx == PARTITIONS:
            partition = self.rotate % PARTITIONS
            self.rotate += 1
        else:
            partition = idx
        self.publish_records(partition, recs)
        for g in self.groups:
            self.owed[g] = self.owed.get(g, 0) + len(recs)

    def publish_records(self, partition: int, recs: list) -> None:
        self.bseq += 1
        data = encode_batch(self.owner.id, self.stream, self.bseq, recs)
        if len(data) > MAX_BATCH_BYTES and len(recs) > 1:
            self.bseq -= 1
            half = len(recs) // 2
            self.publish_records(partition, recs[:half])
            self.publish_records(partition, recs[half:])
            return
        self.owner.publish(data_subject(self.stream, partition), data)
        self.published += len(recs)
        self.seq_by_partition[partition] = recs[-1][3]
        self.at_by_partition[partition] = time.monotonic()

    def credit(self, group: str, n: int) -> None:
        self.last_credit_at = time.monotonic()
        cur = self.owed.get(group)
        if cur is None:
            return
        self.owed[group] = max(0, cur - n)
        if self.blocked_now and not self.credit_blocked():
            self.flush()

    def check_stall(self, now: float) -> None:
        if not self.blocked_now or self.held or now - self.last_credit_at < STALL_RESET_S:
            return
        for g, n in list(self.owed.items()):
            if n > self.owner.window:
                log.warning("bridge producer %s: consumer group %s gave no credit for 5 s while %d record(s) were owed; presumed gone, its debt reset",
                            self.owner.id, g, n)
                self.owed[g] = 0
        self.last_credit_at = now
        if not self.credit_blocked():
            self.flush()

    def fences(self) -> tuple:
        now = time.monotonic()
        fences = {str(p): s for p, s in enumerate(self.seq_by_partition) if s > 0}
        ages = {str(p): max(0, round((now - self.at_by_partition[p]) * 1000)) for p, s in enumerate(self.seq_by_partition) if s > 0}
        return fences, ages

    @property
    def last_published_seq(self) -> int:
        return max(self.seq_by_partition) if self.published else 0

    def close(self) -> None:
        if self.linger is not None:
            self.linger.cancel()
            self.linger = None


class Producer:
    """A registered bridge producer. Create with ``await Producer.start(nc, streams)``."""

    def __init__(self, nc, streams: list, id: Optional[str] = None, window: int = DEFAULT_WINDOW):
        if not isinstance(streams, (list, tuple)) or not streams:
            raise BridgeError("BAD_REQUEST", "a bridge producer needs at least one stream")
        for s in streams:
            _check_name("stream", s)
        if id is not None:
            _check_id("bridge id", id)
        if not (type(window) is int and window > 0):
            raise BridgeError("BAD_REQUEST", f"window must be a positive integer, got {window!r}")
        self.nc = nc
        self.id = id or f"bridge-py-{secrets.token_hex(8)}"
        self.streams = list(dict.fromkeys(streams))
        self.window = window
        self.view = _TopologyView()
        self.outs = {s: _StreamOut(self, s) for s in self.streams}
        self.started_at = _now_ms()
        self.produced = 0
        self.pauses = 0
        self.waits = 0
        self.malformed_credits = 0
        self._subs: list = []
        self._tasks: list = []
        self._lease: Optional[asyncio.TimerHandle] = None
        self._wake = asyncio.Event()
        self._closed = False
        self._publish_tasks: set = set()

    @classmethod
    async def start(cls, nc, streams: list, id: Optional[str] = None, window: int = DEFAULT_WINDOW, timeout: float = 10.0) -> "Producer":
        p = cls(nc, streams, id=id, window=window)
        try:
            await p._open(timeout)
        except BaseException:
            await p._teardown()
            raise
        return p

    async def _open(self, timeout: float) -> None:
        await self.view.watch(self.nc.jetstream())
        self._subs.append(await self.nc.subscribe(credit_subject(self.id), cb=self._on_credit))
        # Control before registering: a swap may pause it as soon as the controller lists it.
        self._subs.append(await self.nc.subscribe(control_subject(self.id), cb=self._on_control))
        await self.nc.flush()
        reply = await _call(self.nc, REGISTER, self._registration(), timeout)
        hb = max(0.05, reply["heartbeatMs"] / 1000)
        self._tasks.append(asyncio.ensure_future(self._every(hb, self._heartbeat)))
        self._tasks.append(asyncio.ensure_future(self._every(1.0, self._check_stall)))

    def _registration(self) -> dict:
        return {"kind": "producer", "id": self.id, "streams": list(self.streams), "host": socket.gethostname()[:255],
                "pid": os.getpid(), "lang": "python", "startedAt": self.started_at}

    async def _every(self, seconds: float, fn) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await fn()
            except Exception as e:  # noqa: BLE001 - a timer must keep running
                log.warning("bridge producer %s: %s", self.id, e)

    async def _heartbeat(self) -> None:
        s = self.stats()
        hb = {**self._registration(), "at": _now_ms(),
              "stats": {"records": s["published"], "pending": s["pending"], "debt": s["debt"], "paused": s["paused"]}}
        if not self.nc.is_closed:
            await self.nc.publish(heartbeat_subject(self.id), json.dumps(hb).encode())

    async def _check_stall(self) -> None:
        now = time.monotonic()
        for o in self.outs.values():
            o.check_stall(now)
        self._signal()

    def publish(self, subject: str, data: bytes) -> None:
        # nats-py's publish appends to its buffer before it first awaits, so order is kept.
        t = asyncio.ensure_future(self.nc.publish(subject, data))
        self._publish_tasks.add(t)
        t.add_done_callback(self._publish_tasks.discard)

    def _signal(self) -> None:
        self._wake.set()
        self._wake = asyncio.Event()

    async def _wait(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._wake.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def _on_credit(self, msg) -> None:
        try:
            c = msgpack.unpackb(msg.data, raw=False, strict_map_key=False)
        except Exception:  # noqa: BLE001 - anything that is not msgpack
            self.malformed_credits += 1
            return
        if not isinstance(c, dict):
            self.malformed_credits += 1
            return
        g, n = c.get("g"), c.get("n")
        if n == 0 and type(n) is int:
            return  # owed for an empty batch: pointless, not counted
        if not (isinstance(g, str) and GROUP.fullmatch(g) and type(n) is int and 1 <= n <= MAX_SAFE):
            self.malformed_credits += 1
            return
        for o in self.outs.values():
            o.credit(g, n)
        self._signal()

    async def _on_control(self, msg) -> None:
        try:
            reply = await self._control(msg.data)
        except BridgeError as e:
            reply = _err(e.code, e.message)
        except Exception as e:  # noqa: BLE001 - answered, never raised into nats-py
            reply = _err("TOPO_ERROR", str(e))
        if msg.reply:
            await self.nc.publish(msg.reply, reply)

    async def _control(self, data: bytes) -> bytes:
        try:
            req = json.loads(data.decode()) if data else {}
        except ValueError as e:
            raise BridgeError("BAD_REQUEST", f"bridge control is not JSON: {e}")
        if not isinstance(req, dict):
            raise BridgeError("BAD_REQUEST", "bridge control must be a JSON object")
        op = req.get("op")
        if op not in ("pause", "resume"):
            raise BridgeError("BAD_REQUEST", f"unknown bridge control op {op!r} (a registered producer answers pause and resume)")
        iid, swap_id, streams, lease_ms = req.get("instanceId"), req.get("swapId"), req.get("streams"), req.get("leaseMs")
        if not isinstance(iid, str) or not ID.fullmatch(iid):
            raise BridgeError("BAD_REQUEST", "bridge control: instanceId: must be an id")
        if swap_id is not None and (not isinstance(swap_id, str) or not ID.fullmatch(swap_id)):
            raise BridgeError("BAD_REQUEST", "bridge control: swapId: must contain only letters, digits, \"_\" or \"-\"")
        if op == "pause":
            if streams is not None and (not isinstance(streams, list) or not all(isinstance(s, str) and NAME.fullmatch(s) for s in streams)):
                raise BridgeError("BAD_REQUEST", "bridge control: streams: must be a list of stream names")
            if lease_ms is not None and not (type(lease_ms) is int and 0 < lease_ms <= MAX_SAFE):
                raise BridgeError("BAD_REQUEST", "bridge control: leaseMs: must be a positive integer")
        if iid != self.id:
            raise BridgeError("NOT_FOUND", f"producer {iid} is not this bridge ({self.id})")
        if op == "resume":
            self._resume()
            return _ok()
        self.pauses += 1
        held = [self.outs[s] for s in (streams if streams is not None else self.streams) if s in self.outs]
        for o in held:
            o.held = True
        lease = (lease_ms or DEFAULT_PAUSE_LEASE_MS) / 1000
        if self._lease is not None:
            self._lease.cancel()
        self._lease = asyncio.get_running_loop().call_later(lease, self._lease_expired, lease)
        # What was published before the fence must be on the server before we report it: every publish
        # scheduled so far is in the connection's buffer first, then a round trip.
        if self._publish_tasks:
            await asyncio.gather(*list(self._publish_tasks), return_exceptions=True)
        await self.nc.flush()
        fences, partition_fences, ages = {}, {}, {}
        for o in held:
            pf, pa = o.fences()
            fences[o.stream] = o.last_published_seq
            partition_fences[o.stream] = pf
            ages[o.stream] = pa
        return _ok(producer=self.id, fences=fences, partitionFences=partition_fences, partitionAgesMs=ages)

    def _lease_expired(self, lease: float) -> None:
        self._lease = None
        log.warning("bridge producer %s: pause lease of %d ms expired without resume; resuming output", self.id, lease * 1000)
        self._resume()

    def _resume(self) -> None:
        if self._lease is not None:
            self._lease.cancel()
            self._lease = None
        for o in self.outs.values():
            o.held = False
            o.flush()
        self._signal()

    def _out(self, stream: str) -> _StreamOut:
        o = self.outs.get(stream)
        if o is None:
            raise BridgeError("BAD_REQUEST", f'"{stream}" is not a stream of bridge producer {self.id} (its streams: {", ".join(self.streams)})')
        return o

    async def produce(self, stream: str, key: str, value: Any, trace: Optional[str] = None) -> None:
        """Produces one record; waits while the stream is blocked by credit or held with its buffer full."""
        if self._closed:
            raise BridgeError("TOPO_ERROR", f"bridge producer {self.id} is closed")
        if not isinstance(key, str):
            raise BridgeError("BAD_REQUEST", f"key must be a string, got {type(key).__name__}")
        o = self._out(stream)
        o.produce(key, value, trace)
        self.produced += 1
        if not o.is_blocked():
            return
        self.waits += 1
        while o.is_blocked() and not self.nc.is_closed:
            await self._wait(0.05)

    async def flush(self) -> None:
        """Waits until everything produced so far is published (after a pause: once resumed) and on the server."""
        while True:
            pending = 0
            for o in self.outs.values():
                o.flush()
                pending += o.pending
            if pending == 0 or self.nc.is_closed:
                break
            await self._wait(0.02)
        if self._publish_tasks:
            await asyncio.gather(*list(self._publish_tasks), return_exceptions=True)
        if not self.nc.is_closed:
            await self.nc.flush()

    def debt(self, stream: Optional[str] = None) -> int:
        """The largest credit debt of any consumer group on ``stream`` (or any stream)."""
        outs = [self._out(stream)] if stream else self.outs.values()
        return max([n for o in outs for n in o.owed.values()] or [0])

    @property
    def paused(self) -> bool:
        return any(o.held for o in self.outs.values())

    def stats(self) -> dict:
        return {"produced": self.produced, "published": sum(o.published for o in self.outs.values()),
                "pending": sum(o.pending for o in self.outs.values()), "debt": self.debt(), "paused": self.paused,
                "pauses": self.pauses, "waits": self.waits, "malformedCredits": self.malformed_credits}

    async def close(self) -> None:
        """Publishes what is pending, leaves the controller's table and stops."""
        if self._closed:
            return
        try:
            await self.flush()
        finally:
            self._closed = True
            if not self.nc.is_closed:
                try:
                    await _call(self.nc, UNREGISTER, {"id": self.id}, 5.0)
                except Exception:  # noqa: BLE001 - the lease ends it anyway
                    pass
            await self._teardown()

    async def _teardown(self) -> None:
        self._closed = True
        for t in self._tasks:
            t.cancel()
        if self._lease is not None:
            self._lease.cancel()
        for s in self._subs:
            try:
                await s.unsubscribe()
            except Exception:  # noqa: BLE001
                pass
        for o in self.outs.values():
            o.close()
        await self.view.stop()
        self._signal()


# --- consumer -------------------------------------------------------------------------------------

@dataclass
class BridgeRecord:
    stream: str
    partition: int
    producer: str
    key: str
    value: Any
    timestamp: int
    seq: int
    trace: Optional[str] = None


class Consumer:
    """A member of a registered consumer group. Create with ``await Consumer.start(nc, stream, group=...)``."""

    def __init__(self, nc, stream: str, group: str, grouping: str = "shuffle", id: Optional[str] = None):
        _check_name("stream", stream)
        _check_name("consumer group", group)
        if grouping not in GROUPINGS:
            raise BridgeError("BAD_REQUEST", f'grouping must be "shuffle", "key" or "broadcast", got {grouping!r}')
        if id is not None:
            _check_id("bridge id", id)
        self.nc = nc
        self.stream = stream
        self.group = group
        self.grouping = grouping
        self.id = id or f"bridge-py-{secrets.token_hex(8)}"
        self.credit_group = group
        self.started_at = _now_ms()
        self._queue: list = []
        self._head = 0
        self._current: Optional[tuple] = None
        self._owes_for: Optional[str] = None
        self._owed: dict = {}
        self._wake = asyncio.Event()
        self._sub = None
        self._tasks: list = []
        self._closed = False
        self.received = 0
        self.handed = 0
        self.credited = 0
        self.malformed = 0

    @classmethod
    async def start(cls, nc, stream: str, group: str, grouping: str = "shuffle", id: Optional[str] = None, timeout: float = 10.0) -> "Consumer":
        c = cls(nc, stream, group, grouping, id)
        try:
            await c._open(timeout)
        except BaseException:
            await c._teardown()
            raise
        return c

    async def _open(self, timeout: float) -> None:
        # Subscribed before registering: once producers count the group, nothing they publish is missed.
        kw = {"queue": self.group} if self.grouping == "shuffle" else {}
        self._sub = await self.nc.subscribe(f"topo.data.{self.stream}.*", cb=self._on_msg, **kw)
        await self.nc.flush()
        reply = await _call(self.nc, REGISTER, self._registration(), timeout)
        self.credit_group = reply.get("creditGroup", self.group)
        hb = max(0.05, reply["heartbeatMs"] / 1000)
        self._tasks.append(asyncio.ensure_future(self._every(hb, self._heartbeat)))
        self._tasks.append(asyncio.ensure_future(self._every(CREDIT_FLUSH_S, self._flush_credit_async)))

    def _registration(self) -> dict:
        return {"kind": "consumer", "id": self.id, "group": self.group, "stream": self.stream, "grouping": self.grouping,
                "host": socket.gethostname()[:255], "pid": os.getpid(), "lang": "python", "startedAt": self.started_at}

    async def _every(self, seconds: float, fn) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await fn()
            except Exception as e:  # noqa: BLE001
                log.warning("bridge consumer %s: %s", self.id, e)

    async def _heartbeat(self) -> None:
        hb = {**self._registration(), "at": _now_ms(), "stats": {"records": self.received, "credited": self.credited}}
        if not self.nc.is_closed:
            await self.nc.publish(heartbeat_subject(self.id), json.dumps(hb).encode())

    async def _on_msg(self, msg) -> None:
        self._queue.append(msg)
        self._wake.set()

    def _owe(self, producer: str, n: int) -> None:
        o = self._owed.get(producer, 0) + n
        if o >= CREDIT_EVERY:
            self._owed.pop(producer, None)
            self._send_credit(producer, o)
        else:
            self._owed[producer] = o

    def _send_credit(self, producer: str, n: int) -> None:
        self.credited += n
        if not self.nc.is_closed:
            asyncio.ensure_future(self.nc.publish(credit_subject(producer), msgpack.packb({"g": self.credit_group, "n": n})))

    def _flush_credit(self) -> None:
        owed, self._owed = self._owed, {}
        for p, n in owed.items():
            self._send_credit(p, n)

    async def _flush_credit_async(self) -> None:
        self._flush_credit()

    async def next(self) -> Optional[BridgeRecord]:
        """The next record, or None once closed. The record handed before is credited now (it has been handled)."""
        if self._owes_for is not None:
            self._owe(self._owes_for, 1)
            self._owes_for = None
        while True:
            if self._closed:
                return None
            cur = self._current
            if cur is not None and cur[3] < len(cur[0]):
                recs, src, partition, i = cur
                r = recs[i]
                self._current = (recs, src, partition, i + 1)
                self.handed += 1
                self._owes_for = src
                return BridgeRecord(self.stream, partition, src, r[0], r[1], int(r[2]), int(r[3]), r[4] if len(r) > 4 else None)
            self._current = None
            if self._head < len(self._queue):
                msg = self._queue[self._head]
                self._queue[self._head] = None
                self._head += 1
                if self._head > 1024 and self._head * 2 > len(self._queue):
                    del self._queue[: self._head]
                    self._head = 0
                partition = int(msg.subject.rsplit(".", 1)[1])
                try:
                    b = decode_batch(msg.data)
                except MalformedBatch:
                    self.malformed += 1
                    continue
                self.received += len(b["recs"])
                if b["recs"]:
                    self._current = (b["recs"], b["src"], partition, 0)
                continue
            # Input ran dry: return everything owed, then wait.
            self._flush_credit()
            self._wake.clear()
            if self._head < len(self._queue):
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), 0.1)
            except asyncio.TimeoutError:
                pass

    def __aiter__(self):
        return self

    async def __anext__(self) -> BridgeRecord:
        r = await self.next()
        if r is None:
            raise StopAsyncIteration
        return r

    async def aclose(self) -> None:
        await self.close()

    def stats(self) -> dict:
        return {"received": self.received, "handed": self.handed, "credited": self.credited, "malformed": self.malformed,
                "queued": len(self._queue) - self._head}

    async def close(self) -> None:
        """Credits the record last handed on, leaves the group and stops."""
        if self._closed:
            return
        if self._owes_for is not None:
            self._owe(self._owes_for, 1)
            self._owes_for = None
        self._flush_credit()
        await self._teardown()
        if not self.nc.is_closed:
            await self.nc.flush()
            try:
                await _call(self.nc, UNREGISTER, {"id": self.id}, 5.0)
            except Exception:  # noqa: BLE001 - the lease ends it anyway
                pass

    async def _teardown(self) -> None:
        self._closed = True
        for t in self._tasks:
            t.cancel()
        if self._sub is not None:
            try:
                await self._sub.unsubscribe()
            except Exception:  # noqa: BLE001
                pass
        self._wake.set()
