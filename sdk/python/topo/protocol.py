"""The data-plane pieces of the topo wire protocol v1 (PROTOCOL.md), in Python.

* ``fnv1a32``, ``partition_of``, ``partitions_owned_by``: partitioning;
* ``decode_batch`` / ``encode_batch``: the batch envelope, with the checks of
  "What a consumer checks" and the same reason strings as the TS SDK;
* ``read_frame`` / ``write_frame`` / ``encode_frame``: the frames of the hosted
  operator protocol (4-byte big-endian length + one msgpack map).
"""
from __future__ import annotations

import math
import operator
import os
import re
import select
import struct
from typing import Any, Iterable, Optional

import msgpack

__all__ = [
    "PARTITIONS", "PROTOCOL_VERSION", "MAX_FRAME", "MalformedBatch", "ProtocolError",
    "fnv1a32", "partition_of", "partitions_owned_by", "decode_batch", "check_batch", "encode_batch",
    "encode_frame", "decode_frame", "read_frame", "write_frame", "unpack_plain", "is_trace_id",
]

PARTITIONS = 32
PROTOCOL_VERSION = 1
MAX_FRAME = 256 * 1024 * 1024
_SRC_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
_isfinite = math.isfinite


class MalformedBatch(ValueError):
    """Bytes that are not a valid v1 batch (code MALFORMED_BATCH). ``str(err)`` is the reason."""

    code = "MALFORMED_BATCH"


class ProtocolError(Exception):
    """A frame that breaks the operator protocol."""


# --- partitioning -------------------------------------------------------------------------------

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
_NO_TRACE = "0" * 32


def is_trace_id(v: Any) -> bool:
    """A well-formed trace id (PROTOCOL.md, Traces): 32 lowercase hex digits, not all zero (a W3C trace-id)."""
    return type(v) is str and len(v) == 32 and _TRACE_ID.fullmatch(v) is not None and v != _NO_TRACE


def fnv1a32(key: str) -> int:
    """FNV-1a 32-bit over the UTF-8 bytes of ``key`` (unsigned)."""
    h = 0x811C9DC5
    for b in key.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


_partition_cache: dict = {}


def partition_of(key: str) -> int:
    """The partition (0..31) of a record key."""
    p = _partition_cache.get(key)
    if p is None:
        p = fnv1a32(key) % PARTITIONS
        if len(_partition_cache) < 65536:
            _partition_cache[key] = p
    return p


def partitions_owned_by(index: int, count: int, partitions: int = PARTITIONS) -> list:
    """Partitions instance ``index`` of ``count`` owns under key grouping (``p % count == index``)."""
    if count < 1 or index < 0:
        raise ValueError(f"partitions_owned_by: need index >= 0 and count >= 1, got {index}/{count}")
    return [p for p in range(partitions) if p % count == index]


# --- plain msgpack ------------------------------------------------------------------------------

def _reject_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"extension type {code} is not part of the protocol")


def unpack_plain(data: bytes) -> Any:
    """Exactly one msgpack value, plain msgpack only (no extension types); raises ValueError otherwise.

    ``max_ext_len=0`` makes msgpack refuse every extension with a payload before decoding it (the
    timestamp extension -1 included, which would otherwise bypass ``ext_hook``); ``ext_hook`` refuses
    the empty ones."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_reject_ext, max_ext_len=0)
    except ValueError as err:
        if "max_ext_len" in str(err) or "timestamp" in str(err):
            raise ValueError("extension types are not part of the protocol") from None
        raise


# --- batches ------------------------------------------------------------------------------------

def check_batch(raw: Any) -> tuple:
    """Checks a decoded batch map; returns ``(src, recs)``. Raises MalformedBatch with the TS reasons."""
    if type(raw) is not dict:
        raise MalformedBatch("batch must be a msgpack map")
    v = raw.get("v")
    if not ((type(v) is int or type(v) is float) and v == PROTOCOL_VERSION):
        raise MalformedBatch(f"unsupported protocol version {v!r} (expected {PROTOCOL_VERSION})")
    src = raw.get("src")
    if type(src) is not str or not src:
        raise MalformedBatch("batch.src must be a non-empty string")
    if not _SRC_ID.fullmatch(src):
        raise MalformedBatch(f'batch.src must be a subject-safe id (1-128 letters, digits, "_" or "-"), got {src[:40]!r}')
    if type(raw.get("stream")) is not str:
        raise MalformedBatch("batch.stream must be a string")
    bseq = raw.get("bseq")
    tb = type(bseq)
    if not ((tb is int and bseq >= 0) or (tb is float and bseq.is_integer() and bseq >= 0)):
        raise MalformedBatch("batch.bseq must be an unsigned integer")
    recs = raw.get("recs")
    if type(recs) is not list:
        raise MalformedBatch("batch.recs must be an array")
    if _records_ok(recs):
        return src, recs
    _check_records(recs)  # names the first bad record
    return src, recs


_INT_FLOAT = frozenset((int, float))
_get0, _get2, _get3, _get4 = (operator.itemgetter(i) for i in (0, 2, 3, 4))
_LIST, _STR, _FOUR_FIVE = frozenset((list,)), frozenset((str,)), frozenset((4, 5))
_TRACE = frozenset((str, type(None)))


def _records_ok(recs: list) -> bool:
    """The per-record checks as a few passes in C (map/set); False when any record may be bad."""
    if not recs:
        return True
    if set(map(type, recs)) != _LIST:
        return False
    lens = set(map(len, recs))
    if not lens <= _FOUR_FIVE:
        return False
    if set(map(type, map(_get0, recs))) != _STR:
        return False
    for get in (_get2, _get3):
        values = list(map(get, recs))
        kinds = set(map(type, values))
        if not kinds <= _INT_FLOAT:
            return False
        if float in kinds and not all(map(_isfinite, values)):
            return False
    if 5 in lens:
        if not set(map(type, map(_get4, filter(lambda r: len(r) == 5, recs)))) <= _TRACE:
            return False
    return True


def _check_records(recs: list) -> None:
    i = 0
    for r in recs:
        if type(r) is not list or not 4 <= len(r) <= 5:
            raise MalformedBatch(f"recs[{i}] must be an array of 4 or 5 items")
        if type(r[0]) is not str:
            raise MalformedBatch(f"recs[{i}].key must be a string")
        x = r[2]
        t = type(x)
        if t is not int and not (t is float and _isfinite(x)):
            raise MalformedBatch(f"recs[{i}].ts must be a number")
        x = r[3]
        t = type(x)
        if t is not int and not (t is float and _isfinite(x)):
            raise MalformedBatch(f"recs[{i}].seq must be a number")
        if len(r) == 5 and r[4] is not None and type(r[4]) is not str:
            raise MalformedBatch(f"recs[{i}].trace must be a string or nil")
        i += 1


def decode_batch(data: bytes) -> dict:
    """Decodes and checks a v1 batch; returns the map (``v, src, stream, bseq, recs`` and any unknown
    fields). Raises MalformedBatch naming the first problem, in the order of PROTOCOL.md."""
    try:
        raw = unpack_plain(data)
    except Exception as err:  # ExtraData, OutOfData, FormatError, StackError, ValueError, TypeError ...
        raise MalformedBatch(f"not msgpack: {type(err).__name__}: {err}") from None
    check_batch(raw)
    return raw


def encode_batch(src: str, stream: str, bseq: int, recs: Iterable) -> bytes:
    """Encodes a batch envelope. ``recs`` are ``(key, value, ts, seq[, trace])`` sequences.
    Values must be plain msgpack (TypeError otherwise)."""
    out = []
    for r in recs:
        r = list(r)
        if not 4 <= len(r) <= 5:
            raise ValueError("encode_batch: a record is (key, value, ts, seq[, trace])")
        out.append(r)
    body = {"v": PROTOCOL_VERSION, "src": src, "stream": stream, "bseq": bseq, "recs": out}
    check_batch(body)
    return msgpack.packb(body, use_bin_type=True)


# --- frames -------------------------------------------------------------------------------------

_LEN = struct.Struct(">I")


def encode_frame(message: dict) -> bytes:
    """One frame: 4-byte big-endian length, then the msgpack map."""
    body = msgpack.packb(message, use_bin_type=True)
    return _LEN.pack(len(body)) + body


def frame_from_body(body: bytes) -> bytes:
    if not 1 <= len(body) <= MAX_FRAME:
        raise ProtocolError(f"frame of {len(body)} bytes (1..{MAX_FRAME})")
    return _LEN.pack(len(body)) + body


def decode_frame(body: bytes) -> dict:
    """The map of a frame's body; ProtocolError when it is not one plain msgpack map with ``op``."""
    try:
        msg = unpack_plain(body)
    except Exception as err:
        raise ProtocolError(f"frame is not msgpack: {type(err).__name__}: {err}") from None
    if type(msg) is not dict or type(msg.get("op")) is not str:
        raise ProtocolError("frame must be a msgpack map with a str op")
    return msg


def _read_exactly(fd: int, n: int) -> Optional[bytes]:
    chunks = []
    while n > 0:
        b = os.read(fd, n)
        if not b:
            if chunks:
                raise ProtocolError("end of file inside a frame")
            return None
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


def read_frame(fd: int) -> Optional[dict]:
    """Blocking read of one frame from a file descriptor; None at end of file before a frame."""
    head = _read_exactly(fd, 4)
    if head is None:
        return None
    (n,) = _LEN.unpack(head)
    if not 1 <= n <= MAX_FRAME:
        raise ProtocolError(f"frame length {n} out of range (1..{MAX_FRAME})")
    body = _read_exactly(fd, n)
    if body is None:
        raise ProtocolError("end of file inside a frame")
    return decode_frame(body)


def write_all(fd: int, data: bytes) -> None:
    """Writes everything, also to a non-blocking fd (waits for it to be writable)."""
    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]


def write_frame(fd: int, message: dict) -> None:
    """Blocking write of one frame to a file descriptor."""
    write_all(fd, encode_frame(message))
