"""Typed streams in the computation API, the test kit and the operator: encoded at produce_record,
decoded before process_record (PROTOCOL.md "Typed streams"; the descriptor is the TS-made one of
test_typed.py)."""
import pytest

from conftest import batch
from topo import Computation, Metadata
from topo.testing import TestContext

# The TS-made declaration and encoding (as in test_typed.py: protocol/types.ts over test/fixtures/typed-tweet.proto).
TWEET = {"message": "demo.Tweet", "descriptor": "CpQCCgpkZW1vLnByb3RvEgRkZW1vIiAKBFVzZXISCgoCaWQYASABKAMSDAoEbmFtZRgCIAEoCSKqAQoFVHdlZXQSDAoEdGV4dBgBIAEoCRISCgR1c2VyGAIgASgLMgRVc2VyEgwKBHRhZ3MYAyADKAkSEgoEa2luZBgEIAEoDjIES2luZBIWCgZjb3VudHMYBSADKAsyBkNvdW50cxIMCgRibG9iGAYgASgMEg0KBXNjb3JlGAcgASgBGigKBkNvdW50cxILCgNrZXkYASABKAkSDQoFdmFsdWUYAiABKAU6AjgBKikKBEtpbmQSCQoFVFdFRVQQABILCgdSRVRXRUVUEAESCQoFUkVQTFkQAmIGcHJvdG8z", "fingerprint": "eee471182f12a476f2ae15cd958063b07aedf692006c6f0058ec2df980e04804"}
TS_SAMPLE_HEX = "0a0568656c6c6f1207082a1203616e6e1a01611a016220012a090a056c696b6573100339000000000000f83f"
SAMPLE = {"text": "hello", "user": {"id": 42, "name": "ann"}, "tags": ["a", "b"], "kind": "RETWEET", "counts": {"likes": 3}, "score": 1.5}
DECODED = {**SAMPLE, "blob": b""}

SOURCE = f'''
from topo import Computation, Metadata
TWEET = {TWEET!r}

class Relay(Computation):
    def metadata(self):
        return Metadata(name="relay", istreams=["tweets"], ostreams=["out", "plain"], types={{"tweets": TWEET, "out": TWEET}})

    def process_record(self, ctx, r):
        if r.value["text"] == "bad out":
            ctx.produce_record("out", r.key, {{"text": 5}})
        ctx.produce_record("out", r.key, {{**r.value, "text": r.value["text"].upper()}})
        ctx.produce_record("plain", r.key, r.value["user"])
'''


def relay():
    ns = {}
    exec(compile(SOURCE, "relay.py", "exec"), ns)
    return ns["Relay"]


def test_the_kit_encodes_and_decodes_typed_streams():
    t = TestContext(relay())
    t.send("tweets", "ann", SAMPLE)
    out = t.take_outputs()
    assert out[0].value == {**DECODED, "text": "HELLO"}  # encoded at produce, decoded as a consumer would
    assert out[1].value == {"id": 42, "name": "ann"}
    t.send("tweets", "ann", bytes.fromhex(TS_SAMPLE_HEX))  # bytes are taken as the encoding
    assert t.take_outputs()[0].value["text"] == "HELLO"
    with pytest.raises(TypeError, match="value does not fit demo.Tweet"):
        t.send("tweets", "ann", {"nope": 1})
    with pytest.raises(TypeError, match=r'produce_record\("out", "ann"\): value does not fit demo.Tweet: text'):
        t.send("tweets", "ann", {"text": "bad out"})


def test_typed_metadata_travels_in_describe_and_hello(operator, write_comp):
    path = write_comp(SOURCE)
    op = operator(path)
    hello = op.read_frame()
    assert hello["metadata"]["types"] == {"out": TWEET, "tweets": TWEET}


def test_the_operator_decodes_typed_input_and_encodes_typed_output(operator, write_comp):
    op = operator(write_comp(SOURCE))
    op.read_frame()
    op.request("init", instance={"index": 0, "count": 1, "id": "relay-0"}, state=[], timers=[], runInit=True)
    good = bytes.fromhex(TS_SAMPLE_HEX)
    recs = [["ann", good, 1, 1], ["bob", {"text": "a map, not bin"}, 2, 2], ["cy", b"\xff\xff\xff", 3, 3], ["dee", good, 4, 4]]
    c = op.request("activate", now=1, timers=False, batches=[{"stream": "tweets", "data": batch("p1", "tweets", 1, recs)}])
    assert c["batches"] == [["p1", 4]] and c["records"] == 4
    f = c["failures"]
    # Not the computation's failures: "type", which the worker dead-letters as a type mismatch.
    assert [(x["where"], x["index"]) for x in f] == [("type", 1), ("type", 2)]
    assert f[0]["error"].startswith('stream "tweets" is typed demo.Tweet (fingerprint eee471182f12): expected its protobuf encoding')
    assert f[1]["error"].startswith('stream "tweets" is typed demo.Tweet (fingerprint eee471182f12): the record does not decode')
    outs = c["outputs"]
    assert [(o[0], o[1]) for o in outs] == [("out", "ann"), ("plain", "ann"), ("out", "dee"), ("plain", "dee")]
    from topo.typed import StreamType
    assert isinstance(outs[0][2], bytes) and StreamType("out", TWEET).decode(outs[0][2]) == {**DECODED, "text": "HELLO"}
    assert outs[1][2] == {"id": 42, "name": "ann"}
