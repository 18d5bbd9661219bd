"""The operator.json conversation replayed through a real `python -m topo run`, byte for byte on the
request side (the same session examples/go-operator replays): word-lengths, then a stop-on-failure case."""
import os

from conftest import load_vectors

WORD_LENGTHS = '''
from topo import Computation, Metadata

class WordLengths(Computation):
    """For each str value, produces {word, length, total} (total: words seen for the key)."""
    def metadata(self):
        return Metadata(name="word-lengths", istreams=["words"], ostreams=["word-lengths"])

    def process_record(self, ctx, r):
        if not isinstance(r.value, str):
            return
        total = ctx.state.get(r.key, 0) + 1
        ctx.state[r.key] = total
        ctx.produce_record("word-lengths", r.key, {"word": r.value, "length": len(r.value), "total": total})

    def process_timer(self, ctx, key, time):
        ctx.state.delete(key)
        ctx.log.debug("total reset", extra={"key": key, "at": time})
'''

FAILING = '''
from topo import Computation, Metadata

class Failing(Computation):
    seen = 0
    def metadata(self):
        return Metadata(name="failing", istreams=["events"], ostreams=["word-lengths"])

    def process_record(self, ctx, r):
        Failing.seen += 1
        if Failing.seen == 2:
            raise ValueError("bad value")
        ctx.state[r.key] = 1
        ctx.produce_record("word-lengths", r.key, {"bytes": bytes([0, 255]), "note": None})
'''

VECTORS = {v["name"]: v for v in load_vectors("operator.json")["vectors"]}


def from_json(value):
    import base64
    if isinstance(value, dict):
        if list(value) == ["$bin"]:
            return base64.b64decode(value["$bin"])
        return {k: from_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def want(name):
    return from_json(VECTORS[name]["decoded"])


def send(op, name):
    os.write(op.w, bytes.fromhex(VECTORS[name]["hex"]))
    reply = op.read_frame()
    assert reply is not None, op.stderr()
    return reply


def without(m, *keys):
    return {k: v for k, v in m.items() if k not in keys}


def python_errors(failures):
    """Python failures read "Type: message"; the vectors carry the message alone."""
    out = []
    for f in failures:
        f = dict(f)
        if f["where"] != "decode":
            f["error"] = f["error"].split(": ", 1)[1]
        out.append(f)
    return out


def as_maps(reply):
    return {k: dict(map(tuple, reply[k])) for k in ("state", "timers")}


def test_word_lengths_session(operator, write_comp):
    op = operator(write_comp(WORD_LENGTHS))
    hello = op.read_frame()
    assert hello["metadata"] == {"name": "word-lengths", "istreams": [{"stream": "words", "grouping": "shuffle"}],
                                 "ostreams": ["word-lengths"]}
    got = send(op, "init-empty")
    assert without(got, "busyMs") == without(want("completion-empty"), "busyMs")
    got = send(op, "init-with-state-and-timers")
    assert got["stateKeys"] == 5 and got["timers"] == 2
    assert got["nextTimerAt"] == want("init-with-state-and-timers")["timers"][0][1]
    assert as_maps(send(op, "snapshot-all")) == as_maps(want("snapshot-reply-all"))
    assert as_maps(send(op, "snapshot-partitions")) == as_maps(want("snapshot-reply-partitions"))
    got = send(op, "activate-two-batches")
    exp = want("completion-outputs")
    for k in ("outputs", "records", "batches", "failures"):
        assert got[k] == exp[k], k
    got = send(op, "activate-timers-only")  # both timers due: the totals of "a" and "user-42" are reset
    assert got["stateKeys"] == 5 and got["timers"] == 0 and got["nextTimerAt"] is None
    assert got["logs"] == [["debug", "total reset", {"key": "a", "at": 1700000060000}],
                           ["debug", "total reset", {"key": "user-42", "at": 1700000060500}]]
    got = send(op, "activate-undecodable-batch")
    exp = want("completion-undecodable-batch")
    assert [got[k] for k in ("records", "batches")] == [exp[k] for k in ("records", "batches")]
    assert got["failures"] == exp["failures"]  # the reason string is the TS SDK's, word for word
    got = send(op, "destroy")
    assert got["op"] == "completion" and got["id"] == 8
    assert op.wait() == 0


def test_stop_on_failure_session(operator, write_comp):
    op = operator(write_comp(FAILING))
    op.read_frame()
    send(op, "init-empty")
    got = send(op, "activate-stop-on-failure")
    exp = want("completion-stopped")
    assert without(got, "busyMs", "failures") == without(exp, "busyMs", "failures")
    assert python_errors(got["failures"]) == exp["failures"]
    assert got["failures"][0]["error"] == "ValueError: bad value"
    op.close_input()
    assert op.wait() == 0
