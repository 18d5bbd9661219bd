"""topo.typed: protobuf-typed streams built from the descriptor in the metadata (PROTOCOL.md "Typed streams").

The descriptor and encoding below were made by the TS side (protocol/types.ts describeProto over
test/fixtures/typed-tweet.proto): Python must read what TS writes, byte for byte, and the reverse.
"""
import base64
import hashlib

import pytest

# Needs the `protobuf` package (an SDK dependency for typed streams): no skip, a missing package fails here.
from topo.typed import (TYPE_MISMATCH, StreamType, StreamTypes, TypeMismatch, describe_descriptor_set,
                        describe_message_class, type_label)

TWEET = {"message": "demo.Tweet", "descriptor": "CpQCCgpkZW1vLnByb3RvEgRkZW1vIiAKBFVzZXISCgoCaWQYASABKAMSDAoEbmFtZRgCIAEoCSKqAQoFVHdlZXQSDAoEdGV4dBgBIAEoCRISCgR1c2VyGAIgASgLMgRVc2VyEgwKBHRhZ3MYAyADKAkSEgoEa2luZBgEIAEoDjIES2luZBIWCgZjb3VudHMYBSADKAsyBkNvdW50cxIMCgRibG9iGAYgASgMEg0KBXNjb3JlGAcgASgBGigKBkNvdW50cxILCgNrZXkYASABKAkSDQoFdmFsdWUYAiABKAU6AjgBKikKBEtpbmQSCQoFVFdFRVQQABILCgdSRVRXRUVUEAESCQoFUkVQTFkQAmIGcHJvdG8z", "fingerprint": "eee471182f12a476f2ae15cd958063b07aedf692006c6f0058ec2df980e04804"}
# TS: new StreamType('tweets', TWEET).encode(SAMPLE)
TS_SAMPLE_HEX = "0a0568656c6c6f1207082a1203616e6e1a01611a016220012a090a056c696b6573100339000000000000f83f"
SAMPLE = {"text": "hello", "user": {"id": 42, "name": "ann"}, "tags": ["a", "b"], "kind": "RETWEET", "counts": {"likes": 3}, "score": 1.5}
DECODED = {**SAMPLE, "blob": b""}


def test_the_declaration_is_the_descriptor_and_its_sha256():
    data = base64.b64decode(TWEET["descriptor"])
    assert TWEET["fingerprint"] == hashlib.sha256(data).hexdigest()
    assert describe_descriptor_set(data, "demo.Tweet") == TWEET
    assert type_label(TWEET) == f"demo.Tweet (fingerprint {TWEET['fingerprint'][:12]})"
    assert type_label(None) == "untyped (msgpack)"
    with pytest.raises(TypeError, match=r"defines no message demo.Nope \(messages: demo.User, demo.Tweet\)"):
        describe_descriptor_set(data, "demo.Nope")


def test_reads_what_ts_writes_and_writes_the_same_bytes():
    t = StreamType("tweets", TWEET)
    assert t.decode(bytes.fromhex(TS_SAMPLE_HEX)) == DECODED
    assert t.encode(SAMPLE).hex() == TS_SAMPLE_HEX
    assert t.decode(t.encode({})) == {"text": "", "user": None, "tags": [], "kind": "TWEET", "counts": {}, "blob": b"", "score": 0.0}
    # Enums by number, 64-bit integers as strings, bytes given as bytes; a message instance; bytes already encoded.
    assert t.decode(t.encode({"kind": 2, "user": {"id": "9007199254740993"}, "blob": b"zz"}))["user"] == {"id": 9007199254740993, "name": ""}
    assert t.encode(t.cls.FromString(bytes.fromhex(TS_SAMPLE_HEX))).hex() == TS_SAMPLE_HEX
    assert t.encode(bytes.fromhex(TS_SAMPLE_HEX)).hex() == TS_SAMPLE_HEX


@pytest.mark.parametrize("value, message", [
    ({"user": {"id": "x"}}, 'produce_record("tweets"): value does not fit demo.Tweet: user.id: expected a 64-bit integer, got \'x\''),
    ({"text": 5}, 'produce_record("tweets"): value does not fit demo.Tweet: text: expected a str, got int 5'),
    ({"txet": "typo"}, "txet: no such field in demo.Tweet (fields: text, user, tags, kind, counts, blob, score)"),
    ({"tags": "a"}, "tags: expected a list"),
    ({"tags": ["a", 1]}, "tags[1]: expected a str, got int 1"),
    ({"kind": "QUOTE"}, "kind: expected a demo.Kind value (TWEET, RETWEET, REPLY), got \'QUOTE\'"),
    ({"counts": {"likes": 1.5}}, "counts[\'likes\']: expected a 32-bit integer, got float 1.5"),
    ("a string", "(value): expected a dict (message demo.Tweet), got \'a string\'"),
    (b"\xff\xff\xff", 'produce_record("tweets"): bytes given are not a valid demo.Tweet'),
])
def test_a_value_that_does_not_fit_names_stream_type_and_field(value, message):
    with pytest.raises(TypeError) as e:
        StreamType("tweets", TWEET).encode(value)
    assert message in str(e.value)


def test_a_record_that_does_not_decode_is_a_type_mismatch():
    t = StreamType("tweets", TWEET)
    with pytest.raises(TypeMismatch) as e:
        t.decode({"text": "a map"})
    assert str(e.value) == f'stream "tweets" is typed {type_label(TWEET)}: expected its protobuf encoding (msgpack bin), got a dict'
    with pytest.raises(TypeMismatch, match=r'^stream "tweets" is typed demo.Tweet \(fingerprint [0-9a-f]{12}\): the record does not decode as demo.Tweet: '):
        t.decode(b"\xff\xff\xff")
    assert TYPE_MISMATCH == "type mismatch"


def test_stream_types_of_metadata():
    assert StreamTypes.of({"name": "a", "istreams": [], "ostreams": []}) is None
    ts = StreamTypes.of({"name": "a", "istreams": [{"stream": "tweets", "grouping": "shuffle"}], "ostreams": ["out"], "types": {"tweets": TWEET}})
    v = {"any": "thing"}
    assert ts.encode("out", v) is v and ts.decode("out", v) is v
    assert ts.decode("tweets", ts.encode("tweets", SAMPLE)) == DECODED


def test_describe_a_message_class():
    cls = StreamType("tweets", TWEET).cls
    decl = describe_message_class(cls)
    assert decl["message"] == "demo.Tweet"
    t = StreamType("tweets", decl)
    assert t.decode(bytes.fromhex(TS_SAMPLE_HEX)) == DECODED
