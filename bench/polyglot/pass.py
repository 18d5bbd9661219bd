"""Bench pass-through in Python (hosted by a TS worker): bench-a -> bench-b, as bench/topo/pass.ts."""
from topo import Computation, Metadata


class BenchPass(Computation):
    def metadata(self):
        return Metadata(name="bpoly-pass", istreams=["bench-a"], ostreams=["bench-b"])

    def process_record(self, ctx, record):
        ctx.produce_record("bench-b", record.key, record.value)
