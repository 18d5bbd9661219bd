#!/usr/bin/env python3
"""Second, independent reading of the topo protocol v1 conformance vectors.

Decodes every vector with Python's `msgpack` package (not msgpackr, not the
TypeScript SDK) and checks it against the expected values. It also serves as a
small reference for a Python operator: `fnv1a32`, `partitions_owned_by` and
`decode_batch` below follow PROTOCOL.md and raise the same reasons as the
TypeScript SDK; `read_frame` reads one hosted-operator frame (operator.json).

    python3 -m pip install msgpack   # once, e.g. in a virtualenv
    python3 protocol/vectors/verify.py

Exits 1 and lists the failures when a vector disagrees.
"""
import base64
import json
import math
import re
import os
import sys

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
PARTITIONS = 32
PROTOCOL_VERSION = 1
SRC_ID = re.compile(r"[A-Za-z0-9_-]+")  # producer ids: one subject token


class MalformedBatch(Exception):
    pass


def fnv1a32(key: str) -> int:
    h = 0x811C9DC5
    for b in key.encode("utf-8"):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def partitions_owned_by(index: int, count: int, partitions: int = PARTITIONS) -> list:
    return [p for p in range(partitions) if p % count == index]


def _is_int(x) -> bool:
    # bool is an int subclass in Python; msgpack true is not a number.
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x) -> bool:
    return _is_int(x) or isinstance(x, float)


def _reject_extensions(value) -> None:
    if isinstance(value, (msgpack.ExtType, msgpack.Timestamp)):
        raise MalformedBatch("not msgpack: extension types are not part of the protocol")
    if isinstance(value, list):
        for v in value:
            _reject_extensions(v)
    elif isinstance(value, dict):
        for v in value.values():
            _reject_extensions(v)


def decode_batch(data: bytes) -> dict:
    """Decodes and checks a v1 batch; raises MalformedBatch naming what is wrong."""
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception as err:  # OutOfData, ExtraData, FormatError, StackError, ValueError ...
        raise MalformedBatch(f"not msgpack: {type(err).__name__}: {err}") from err
    _reject_extensions(raw)
    if not isinstance(raw, dict):
        raise MalformedBatch("batch must be a msgpack map")
    v = raw.get("v")
    if not (_is_number(v) and v == PROTOCOL_VERSION):
        raise MalformedBatch(f"unsupported protocol version {v!r} (expected {PROTOCOL_VERSION})")
    src = raw.get("src")
    if not isinstance(src, str) or src == "":
        raise MalformedBatch("batch.src must be a non-empty string")
    if len(src) > 128 or not SRC_ID.fullmatch(src):
        raise MalformedBatch(f"batch.src must be a subject-safe id (1-128 letters, digits, \"_\" or \"-\"), got {src[:40]!r}")
    if not isinstance(raw.get("stream"), str):
        raise MalformedBatch("batch.stream must be a string")
    bseq = raw.get("bseq")
    if not (_is_number(bseq) and not (isinstance(bseq, float) and not bseq.is_integer()) and bseq >= 0):
        raise MalformedBatch("batch.bseq must be an unsigned integer")
    recs = raw.get("recs")
    if not isinstance(recs, list):
        raise MalformedBatch("batch.recs must be an array")
    for i, r in enumerate(recs):
        if not isinstance(r, list) or not 4 <= len(r) <= 5:
            raise MalformedBatch(f"recs[{i}] must be an array of 4 or 5 items")
        if not isinstance(r[0], str):
            raise MalformedBatch(f"recs[{i}].key must be a string")
        if not _is_number(r[2]) or not math.isfinite(r[2]):
            raise MalformedBatch(f"recs[{i}].ts must be a number")
        if not _is_number(r[3]) or not math.isfinite(r[3]):
            raise MalformedBatch(f"recs[{i}].seq must be a number")
        if len(r) == 5 and r[4] is not None and not isinstance(r[4], str):
            raise MalformedBatch(f"recs[{i}].trace must be a string or nil")
    return raw


MAX_FRAME = 256 * 1024 * 1024


class BadFrame(Exception):
    pass


def read_frame(stream: bytes, pos: int = 0):
    """Reads one operator-protocol frame (PROTOCOL.md "Hosted operators") from
    `stream` at `pos`; returns (map, next pos). Raises BadFrame for what a
    reader must refuse: a bad length, a stream that ends mid-frame, a body that
    is not exactly one plain msgpack map with a str `op`."""
    if len(stream) - pos < 4:
        raise BadFrame("truncated: the stream ends inside the length prefix")
    n = int.from_bytes(stream[pos:pos + 4], "big")
    if n < 1 or n > MAX_FRAME:
        raise BadFrame(f"frame length {n} is not in 1..{MAX_FRAME}")
    body = stream[pos + 4:pos + 4 + n]
    if len(body) < n:
        raise BadFrame(f"truncated: the frame says {n} bytes, the stream holds {len(body)}")
    try:
        value = msgpack.unpackb(body, raw=False, strict_map_key=False)
        _reject_extensions(value)
    except MalformedBatch as err:
        raise BadFrame(str(err)) from err
    except Exception as err:  # OutOfData, ExtraData (trailing bytes), FormatError ...
        raise BadFrame(f"not msgpack: {type(err).__name__}: {err}") from err
    if not isinstance(value, dict):
        raise BadFrame("frame is not a map")
    if not isinstance(value.get("op"), str):
        raise BadFrame("frame.op must be a string")
    return value, pos + 4 + n


def from_json(value):
    """JSON form -> Python value: {"$bin": base64} becomes bytes."""
    if isinstance(value, dict):
        if list(value.keys()) == ["$bin"]:
            return base64.b64decode(value["$bin"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def same(a, b) -> bool:
    """Deep equality where 1700000000000.0 == 1700000000000 but True != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if _is_number(a) and _is_number(b):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def load(name):
    with open(os.path.join(HERE, name), encoding="utf-8") as f:
        return json.load(f)


def main() -> int:
    failures = []
    counts = {}

    part = load("partition.json")
    for v in part["keys"]:
        h = fnv1a32(v["key"])
        if v["key"].encode("utf-8").hex() != v["utf8"]:
            failures.append(f"partition {v['key'][:20]!r}: utf8 bytes differ")
        if h != v["fnv1a32"] or format(h, "08x") != v["fnv1a32Hex"] or h % part["partitions"] != v["partition"]:
            failures.append(f"partition {v['key'][:20]!r}: got {h}")
    for o in part["ownership"]:
        if partitions_owned_by(o["index"], o["count"], part["partitions"]) != o["partitions"]:
            failures.append(f"ownership {o['index']}/{o['count']}")
    counts["partition keys"] = len(part["keys"])

    fields = ("v", "src", "stream", "bseq", "recs")
    for v in load("batches.json")["vectors"]:
        try:
            b = decode_batch(bytes.fromhex(v["hex"]))
        except MalformedBatch as err:
            failures.append(f"batch {v['name']}: rejected: {err}")
            continue
        got = {k: b[k] for k in fields}
        if not same(got, from_json(v["decoded"])):
            failures.append(f"batch {v['name']}: decoded {got!r}")
        counts["batches"] = counts.get("batches", 0) + 1

    for v in load("malformed.json")["vectors"]:
        try:
            decode_batch(bytes.fromhex(v["hex"]))
            failures.append(f"malformed {v['name']}: accepted")
        except MalformedBatch as err:
            if v["reason"] not in str(err):
                failures.append(f"malformed {v['name']}: reason {err} does not contain {v['reason']!r}")
        counts["malformed"] = counts.get("malformed", 0) + 1

    credit = load("credit.json")
    for v in credit["vectors"]:
        got = msgpack.unpackb(bytes.fromhex(v["hex"]), raw=False)
        if not same(got, v["decoded"]):
            failures.append(f"credit {v['name']}: decoded {got!r}")
        counts["credits"] = counts.get("credits", 0) + 1
    for g in credit["groups"]:
        want = f"{g['computation']}#{g['index']}" if g["grouping"] == "broadcast" else g["computation"]
        if want != g["group"]:
            failures.append(f"group {g}: expected {want}")

    batch_hex = {v["hex"] for v in load("batches.json")["vectors"]}
    for v in load("operator.json")["vectors"]:
        try:
            got, end = read_frame(bytes.fromhex(v["hex"]))
        except BadFrame as err:
            failures.append(f"operator {v['name']}: refused: {err}")
            continue
        if end != len(v["hex"]) // 2:
            failures.append(f"operator {v['name']}: the frame is {end} bytes of {len(v['hex']) // 2}")
        if not same(got, from_json(v["decoded"])) or got["op"] != v["op"]:
            failures.append(f"operator {v['name']}: decoded {got!r}")
        for i, b in enumerate(got.get("batches", []) if got["op"] == "activate" else []):
            try:
                if decode_batch(b["data"])["stream"] != b["stream"]:
                    failures.append(f"operator {v['name']}: batches[{i}] is from another stream")
                if b["data"].hex() not in batch_hex:
                    failures.append(f"operator {v['name']}: batches[{i}] is not a batches.json vector")
            except MalformedBatch:
                pass  # activate-undecodable-batch carries one on purpose
        counts["operator frames"] = counts.get("operator frames", 0) + 1
    for v in load("operator.json")["invalid"]:
        try:
            read_frame(bytes.fromhex(v["hex"]))
            failures.append(f"operator invalid {v['name']}: accepted")
        except BadFrame as err:
            if v["reason"] not in str(err):
                failures.append(f"operator invalid {v['name']}: reason {err} does not contain {v['reason']!r}")
        counts["invalid frames"] = counts.get("invalid frames", 0) + 1

    for f in failures:
        print("FAIL", f)
    print(f"msgpack {'.'.join(map(str, msgpack.version))}: checked {counts}; {len(failures)} failure(s)")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
