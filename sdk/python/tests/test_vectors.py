"""protocol/vectors/*.json against topo.protocol and topo.metadata."""
import base64
import math
import os
import struct

import msgpack
import pytest

from conftest import load_vectors, batch
from topo import InvalidMetadataError, Metadata, Stream, validate_metadata
from topo.protocol import (MalformedBatch, ProtocolError, decode_batch, decode_frame, encode_batch, encode_frame,
                           fnv1a32, partition_of, partitions_owned_by, read_frame, write_frame)

PARTITION = load_vectors("partition.json")
BATCHES = load_vectors("batches.json")["vectors"]
MALFORMED = load_vectors("malformed.json")["vectors"]
METADATA = load_vectors("metadata.json")


def from_json(value):
    if isinstance(value, dict):
        if list(value.keys()) == ["$bin"]:
            return base64.b64decode(value["$bin"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def same(a, b):
    """Deep equality where 1700000000000.0 == 1700000000000 but True != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num):
        return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_vector_counts():
    assert len(PARTITION["keys"]) == 58
    assert len(MALFORMED) >= 53  # PROTOCOL.md says 53; the file has grown
    assert len(BATCHES) >= 27


@pytest.mark.parametrize("v", PARTITION["keys"], ids=lambda v: repr(v["key"][:16]))
def test_partition(v):
    assert v["key"].encode("utf-8").hex() == v["utf8"]
    assert fnv1a32(v["key"]) == v["fnv1a32"]
    assert format(fnv1a32(v["key"]), "08x") == v["fnv1a32Hex"]
    assert partition_of(v["key"]) == v["partition"]
    assert partition_of(v["key"]) == v["partition"]  # cached path


def test_known_hashes():
    assert fnv1a32("a") == 0xE40C292C
    assert fnv1a32("foobar") == 0xBF9CF968
    assert partition_of("") == 5


@pytest.mark.parametrize("o", PARTITION["ownership"], ids=lambda o: f"{o['index']}of{o['count']}")
def test_ownership(o):
    assert partitions_owned_by(o["index"], o["count"]) == o["partitions"]


def test_ownership_covers_every_partition_once():
    for count in (1, 2, 3, 7, 32, 40):
        owned = [p for i in range(count) for p in partitions_owned_by(i, count)]
        assert sorted(owned) == list(range(32))


@pytest.mark.parametrize("v", BATCHES, ids=lambda v: v["name"])
def test_batch_decodes(v):
    b = decode_batch(bytes.fromhex(v["hex"]))
    got = {k: b[k] for k in ("v", "src", "stream", "bseq", "recs")}
    assert same(got, from_json(v["decoded"])), got


@pytest.mark.parametrize("v", BATCHES, ids=lambda v: v["name"])
def test_batch_reencodes(v):
    d = from_json(v["decoded"])
    data = encode_batch(d["src"], d["stream"], d["bseq"], d["recs"])
    again = decode_batch(data)
    assert same({k: again[k] for k in d}, d)


@pytest.mark.parametrize("v", MALFORMED, ids=lambda v: v["name"])
def test_malformed_rejected_with_reason(v):
    with pytest.raises(MalformedBatch) as e:
        decode_batch(bytes.fromhex(v["hex"]))
    assert v["reason"] in str(e.value)


@pytest.mark.parametrize("hexdata", ["d6ff00000001", "d7ff0000000000000001", "c70cff000000000000000000000001"])
def test_timestamp_extension_is_rejected(hexdata):
    # msgpack decodes ext -1 without calling ext_hook: it must be caught anyway
    ts = bytes.fromhex(hexdata)
    body = batch("p1", "s", 1, [["k", None, 1, 1]])
    data = body.replace(b"\xc0", ts)  # the nil value becomes a timestamp
    assert data != body
    with pytest.raises(MalformedBatch, match="not msgpack"):
        decode_batch(data)


def test_timestamp_bytes_inside_a_string_are_fine():
    data = batch("p1", "s", 1, [["k", "\u00ff\u00d6 \xd6\xff".encode("latin-1"), 1, 1]])
    assert decode_batch(data)["recs"][0][1] == "\u00ff\u00d6 \xd6\xff".encode("latin-1")


def test_bool_ts_and_bseq_rejected():
    with pytest.raises(MalformedBatch, match=r"recs\[0\].ts must be a number"):
        decode_batch(batch("p1", "s", 1, [["k", 1, True, 1]]))
    with pytest.raises(MalformedBatch, match="bseq"):
        decode_batch(batch("p1", "s", True, []))


def test_encode_batch_rejects_what_decode_would():
    with pytest.raises(MalformedBatch):
        encode_batch("bad src", "s", 1, [])
    with pytest.raises(ValueError):
        encode_batch("p1", "s", 1, [["k", 1, 2]])


def test_frames_round_trip_through_a_pipe():
    r, w = os.pipe()
    try:
        write_frame(w, {"op": "x", "id": 1, "data": b"\x00\x01"})
        os.write(w, encode_frame({"op": "y", "id": 2}))
        assert read_frame(r) == {"op": "x", "id": 1, "data": b"\x00\x01"}
        assert read_frame(r) == {"op": "y", "id": 2}
        os.close(w)
        w = None
        assert read_frame(r) is None
    finally:
        os.close(r)
        if w is not None:
            os.close(w)


def test_frame_checks():
    assert struct.unpack(">I", encode_frame({"op": "a"})[:4])[0] == len(msgpack.packb({"op": "a"}))
    with pytest.raises(ProtocolError):
        decode_frame(msgpack.packb([1, 2]))
    with pytest.raises(ProtocolError):
        decode_frame(msgpack.packb({"id": 1}))
    with pytest.raises(ProtocolError):
        decode_frame(msgpack.packb({"op": "a", "x": msgpack.ExtType(5, b"x")}))
    with pytest.raises(ProtocolError):
        decode_frame(msgpack.packb({"op": "a"}) + b"\x00")
    r, w = os.pipe()
    os.write(w, b"\x00\x00\x00\x05ab")
    os.close(w)
    with pytest.raises(ProtocolError, match="inside a frame"):
        read_frame(r)
    os.close(r)


# --- metadata -----------------------------------------------------------------------------------

@pytest.mark.parametrize("v", METADATA["valid"], ids=lambda v: v["name"])
def test_metadata_valid(v):
    assert validate_metadata(v["input"]) == v["normalized"]


@pytest.mark.parametrize("v", METADATA["invalid"], ids=lambda v: v["name"])
def test_metadata_invalid(v):
    with pytest.raises(InvalidMetadataError) as e:
        validate_metadata(v["input"])
    reported = [d["path"] for d in e.value.detail]
    for want in v["paths"]:
        assert any(p == want or p.startswith(want + ".") or p.startswith(want + "[") for p in reported), (want, reported)
    for p in reported:
        assert p in str(e.value)
    assert e.value.code == "INVALID_METADATA"


def test_metadata_class_forms():
    m = Metadata(name="j", istreams=["a", Stream("b", grouping="key"), ("c", "broadcast"), {"stream": "d"}], ostreams=["o"])
    assert m.to_dict() == {"name": "j", "istreams": [
        {"stream": "a", "grouping": "shuffle"}, {"stream": "b", "grouping": "key"},
        {"stream": "c", "grouping": "broadcast"}, {"stream": "d", "grouping": "shuffle"}], "ostreams": ["o"]}
    assert m.name == "j" and m.ostreams == ["o"] and m.istreams[1] == Stream("b", "key")


def test_metadata_errors_name_the_field():
    with pytest.raises(InvalidMetadataError, match=r"istreams\[0\].grouping"):
        Metadata(name="x", istreams=[Stream("a", grouping="fanout")], ostreams=[])
    with pytest.raises(InvalidMetadataError, match=r"istreams\[1\].stream"):
        Metadata(name="x", istreams=["a", ("b c", "key")], ostreams=[])
    with pytest.raises(InvalidMetadataError, match=r'ostreams\[1\]: stream "o" is listed twice'):
        Metadata(name="x", istreams=[], ostreams=["o", "o"])


def test_metadata_hints():
    m = Metadata(name="x", istreams=[], ostreams=[], hints={"fuse": False, "cpu": "heavy", "autoscale": {"max": 4, "min": 1}})
    assert m.to_dict()["hints"] == {"cpu": "heavy", "fuse": False, "autoscale": {"min": 1, "max": 4}}
    assert list(m.to_dict()["hints"]) == ["cpu", "fuse", "autoscale"]
    for bad, path in (({"cpu": "x"}, "hints.cpu"), ({"fuse": 1}, "hints.fuse"), ({"autoscale": {"min": 3, "max": 2}}, "hints.autoscale"),
                      ({"autoscale": {"min": 0, "max": 2}}, "hints.autoscale.min"), ({"color": 1}, "hints")):
        with pytest.raises(InvalidMetadataError, match=path.replace(".", r"\.")):
            Metadata(name="x", istreams=[], ostreams=[], hints=bad)


# --- operator.json: hosted-operator frames --------------------------------------------------------

OPERATOR = load_vectors("operator.json")


def _read_all(data):
    r, w = os.pipe()
    try:
        os.write(w, data)
        os.close(w)
        w = None
        return read_frame(r), read_frame(r)
    finally:
        os.close(r)
        if w is not None:
            os.close(w)


@pytest.mark.parametrize("v", OPERATOR["vectors"], ids=lambda v: v["name"])
def test_operator_frame_vectors(v):
    frame, after = _read_all(bytes.fromhex(v["hex"]))
    assert after is None  # exactly one frame, of the whole length
    assert frame["op"] == v["op"]
    assert same(frame, from_json(v["decoded"]))


@pytest.mark.parametrize("v", OPERATOR["invalid"], ids=lambda v: v["name"])
def test_operator_invalid_frames(v):
    with pytest.raises(ProtocolError):
        _read_all(bytes.fromhex(v["hex"]))


def test_operator_max_frame():
    from topo.protocol import MAX_FRAME
    assert OPERATOR["maxFrame"] == MAX_FRAME


def test_metadata_types_are_checked_and_normalized():
    decl = {"message": "demo.Tweet", "descriptor": "CgRkZW1v", "fingerprint": "a" * 64}
    m = Metadata(name="x", istreams=["tweets"], ostreams=["out"], types={"out": dict(decl), "tweets": {**decl, "message": "demo.In"}})
    assert list(m.to_dict()["types"]) == ["out", "tweets"]
    assert m.types["tweets"]["message"] == "demo.In"
    assert "types" not in Metadata(name="x", istreams=[], ostreams=[], types={}).to_dict()
    for bad, path in (({"nope": decl}, "types.nope"), ({"out": {**decl, "message": "1bad"}}, "types.out.message"),
                      ({"out": {**decl, "fingerprint": "xyz"}}, "types.out.fingerprint"),
                      ({"out": {**decl, "descriptor": "not base64!"}}, "types.out.descriptor"),
                      ({"out": {**decl, "extra": 1}}, "types.out"), ("str", "types")):
        with pytest.raises(InvalidMetadataError) as e:
            Metadata(name="x", istreams=["tweets"], ostreams=["out"], types=bad)
        assert path in [d["path"] for d in e.value.detail], (bad, e.value.detail)
