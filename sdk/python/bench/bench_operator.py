"""Per-record throughput of `python -m topo run`, driven over fds 3/4 like a worker.

    python sdk/python/bench/bench_operator.py [--records 200000] [--batch 256] [--per-activate 1]

Compares with a bare loop in this process that does only the msgpack work of
the same batches (unpack each batch, pack one output per record), i.e. the
floor any Python consumer pays before calling user code.
"""
import argparse
import os
import struct
import subprocess
import sys
import tempfile
import textwrap
import time

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
SDK = os.path.dirname(HERE)

COMPS = {
    "map": '''
        from topo import Computation, Metadata
        class Map(Computation):
            def metadata(self): return Metadata(name="map", istreams=["in"], ostreams=["out"])
            def process_record(self, ctx, r): ctx.produce_record("out", r.key, r.value)
    ''',
    "count": '''
        from topo import Computation, Metadata
        class Count(Computation):
            def metadata(self): return Metadata(name="count", istreams=["in"], ostreams=[])
            def process_record(self, ctx, r): ctx.state[r.key] = ctx.state.get(r.key, 0) + 1
    ''',
    "async-map": '''
        from topo import Computation, Metadata
        class AMap(Computation):
            def metadata(self): return Metadata(name="amap", istreams=["in"], ostreams=["out"])
            async def process_record(self, ctx, r): ctx.produce_record("out", r.key, r.value)
    ''',
}


def make_batches(n_records, size):
    batches, seq = [], 0
    for b in range(n_records // size):
        recs = []
        for _ in range(size):
            seq += 1
            recs.append([f"user-{seq % 1000}", {"id": seq, "user": f"user-{seq % 1000}", "text": "hello #nats #python"},
                         1700000000000.0 + seq, seq])
        batches.append(msgpack.packb({"v": 1, "src": "bench-0-abc", "stream": "in", "bseq": b + 1, "recs": recs}))
    return batches


def bare(batches):
    t0 = time.perf_counter()
    n = 0
    pack = msgpack.Packer().pack
    for data in batches:
        b = msgpack.unpackb(data, raw=False)
        out = [pack(["out", r[0], r[1]]) for r in b["recs"]]
        n += len(out)
    return n / (time.perf_counter() - t0)


def hand_loop(batches):
    """What a hand-written nats-py consumer does per message, minus NATS: unpack, call a function per
    record that produces one output, pack the output batch."""
    t0 = time.perf_counter()
    n = 0
    seq = 0

    def process(key, value, out):
        out.append([key, value, 1700000000000.0, 0])

    for data in batches:
        b = msgpack.unpackb(data, raw=False)
        out = []
        for r in b["recs"]:
            process(r[0], r[1], out)
        seq += 1
        msgpack.packb({"v": 1, "src": "hand-0", "stream": "out", "bseq": seq, "recs": out})
        n += len(out)
    return n / (time.perf_counter() - t0)


class Proc:
    def __init__(self, path, progress):
        r_in, self.w = os.pipe()
        self.r, w_out = os.pipe()
        shim = ("import os, sys; a, b = int(sys.argv[1]), int(sys.argv[2]); os.dup2(a, 3); os.dup2(b, 4); "
                "os.execv(sys.executable, [sys.executable, '-m', 'topo', 'run'] + sys.argv[3:])")
        env = dict(os.environ, PYTHONPATH=SDK, TOPO_OPERATOR_IN="3", TOPO_OPERATOR_OUT="4")
        if progress:
            fd, self.progress = tempfile.mkstemp()
            os.write(fd, b"\0" * 16)
            os.close(fd)
            env["TOPO_PROGRESS_FILE"] = self.progress
        self.p = subprocess.Popen([sys.executable, "-c", shim, str(r_in), str(w_out), path], pass_fds=(r_in, w_out), env=env)
        os.close(r_in)
        os.close(w_out)
        self.id = 0
        self.read()

    def read_raw(self):
        head = b""
        while len(head) < 4:
            head += os.read(self.r, 4 - len(head))
        (n,) = struct.unpack(">I", head)
        body = bytearray()
        while len(body) < n:
            body += os.read(self.r, n - len(body))
        return body

    def read(self):
        head = b""
        while len(head) < 4:
            head += os.read(self.r, 4 - len(head))
        (n,) = struct.unpack(">I", head)
        body = bytearray()
        while len(body) < n:
            body += os.read(self.r, n - len(body))
        return msgpack.unpackb(bytes(body), raw=False)

    def request(self, op, **f):
        self.id += 1
        body = msgpack.packb({"op": op, "id": self.id, **f})
        os.write(self.w, struct.pack(">I", len(body)) + body)
        return self.read()


def run(kind, batches, per, progress):
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(textwrap.dedent(COMPS[kind]))
    p = Proc(f.name, progress)
    p.request("init", instance={"index": 0, "count": 1, "id": "bench-0"}, state=[], timers=[], runInit=True)
    frames = [[{"stream": "in", "data": d} for d in batches[i:i + per]] for i in range(0, len(batches), per)]
    warm = frames[: max(1, len(frames) // 10)]
    for fr in warm:
        p.request("activate", now=0, timers=True, batches=fr)
    # Requests encoded and replies decoded outside the timed loop: the worker's share of the work
    # (Node in production) is not charged to the operator. One request at a time, as the worker sends them.
    encoded = []
    for fr in frames:
        p.id += 1
        body = msgpack.packb({"op": "activate", "id": p.id, "now": 0, "timers": True, "batches": fr})
        encoded.append(struct.pack(">I", len(body)) + body)
    replies = []
    t0 = time.perf_counter()
    for frame in encoded:
        os.write(p.w, frame)
        replies.append(p.read_raw())
    dt = time.perf_counter() - t0
    n = sum(msgpack.unpackb(bytes(r), raw=False)["records"] for r in replies)
    p.request("destroy")
    p.p.wait()
    os.unlink(f.name)
    return n / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--per-activate", type=int, default=1)
    ap.add_argument("--progress", action="store_true", help="with TOPO_PROGRESS_FILE (one mmap write per record)")
    a = ap.parse_args()
    batches = make_batches(a.records, a.batch)
    print(f"{len(batches)} batches of {a.batch} records, {a.per_activate} per activate frame; python {sys.version.split()[0]}, msgpack {msgpack.version}")
    print(f"bare msgpack unpack+pack          {bare(batches):>12,.0f} records/s")
    print(f"hand-written loop (no NATS)       {hand_loop(batches):>12,.0f} records/s")
    for kind in COMPS:
        print(f"operator {kind:<10} {'progress' if a.progress else '':<8}  {run(kind, batches, a.per_activate, a.progress):>12,.0f} records/s")


if __name__ == "__main__":
    main()
