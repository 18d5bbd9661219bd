"""Swap bench counter in Python: the twin of counter.ts (a count per key, handed from version to version).
counter_a.py and counter_b.py differ only in their CODE."""
from topo import Computation, Metadata, Stream


class BenchCounter(Computation):
    CODE = "?"

    def metadata(self):
        return Metadata(name="bswap-counter", istreams=[Stream("bswap-in", grouping="key")], ostreams=["bswap-out"])

    def process_record(self, ctx, record):
        count = ctx.state.get(record.key, 0) + 1
        ctx.state[record.key] = count
        v = record.value
        ctx.produce_record("bswap-out", record.key, {"seq": v["seq"], "t": v["t"], "count": count, "code": self.CODE})
