"""The baseline the operator is compared with: a hand-written nats-py consumer loop.

    python sdk/python/bench/bench_nats_loop.py [--records 200000] [--batch 256]

Starts a private nats-server (needs `nats-server` on PATH), publishes the same
256-record batches as bench_operator.py from a child process, and measures a
consumer that, per message, unpacks the batch, calls a function per record that
produces one output, packs the output batch and publishes it.
"""
import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time

import msgpack

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_operator import make_batches  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def publish(url, n_records, size):
    import nats
    nc = await nats.connect(url)
    for data in make_batches(n_records, size):
        await nc.publish("topo.data.in.0", data)
    await nc.publish("bench.end", b"")
    await nc.flush()
    await nc.close()


async def consume(url, n_records, size):
    import nats
    nc = await nats.connect(url)
    done = asyncio.Event()
    state = {"n": 0, "t0": None, "bseq": 0}
    pack = msgpack.packb

    def process(key, value, out):
        out.append([key, value, 1700000000000.0, 0])

    async def on_msg(msg):
        if state["t0"] is None:
            state["t0"] = time.perf_counter()
        b = msgpack.unpackb(msg.data, raw=False)
        out = []
        for r in b["recs"]:
            process(r[0], r[1], out)
        state["bseq"] += 1
        await nc.publish("topo.data.out.0", pack({"v": 1, "src": "hand-0", "stream": "out", "bseq": state["bseq"], "recs": out}))
        state["n"] += len(out)

    async def on_end(msg):
        done.set()

    await nc.subscribe("topo.data.in.*", cb=on_msg, pending_msgs_limit=1_000_000, pending_bytes_limit=1 << 30)
    await nc.subscribe("bench.end", cb=on_end)
    await nc.flush()
    pub = subprocess.Popen([sys.executable, __file__, "--publish", url, "--records", str(n_records), "--batch", str(size)])
    await done.wait()
    while state["n"] < (n_records // size) * size:
        await asyncio.sleep(0.001)
    dt = time.perf_counter() - state["t0"]
    pub.wait()
    await nc.close()
    return state["n"] / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--publish", default=None)
    a = ap.parse_args()
    if a.publish:
        asyncio.run(publish(a.publish, a.records, a.batch))
        return
    port = free_port()
    with tempfile.TemporaryDirectory() as d:
        server = subprocess.Popen(["nats-server", "-a", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL, cwd=d)
        try:
            time.sleep(0.5)
            rate = asyncio.run(consume(f"nats://127.0.0.1:{port}", a.records, a.batch))
            print(f"hand-written nats-py loop          {rate:>12,.0f} records/s ({a.batch}-record batches)")
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    main()
