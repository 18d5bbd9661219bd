"""The baseline of the Python bench: a hand-written nats-py subscriber that decodes each batch
the bench source publishes on topo.data.bench-a.<p> and republishes its records, in a batch
of its own (its src, bseq and seq), on topo.data.bench-b.<p>: the work of a pass-through
operator without topo. Prints "ready" once subscribed. Usage: relay.py <nats-url>"""
import asyncio
import sys

import msgpack
import nats

SRC = "bpoly-relay"


async def main(url):
    nc = await nats.connect(url)
    state = {"bseq": 0, "seq": 0}
    packb = msgpack.Packer(use_bin_type=True).pack

    async def on_batch(msg):
        b = msgpack.unpackb(msg.data, raw=False)
        if not isinstance(b, dict) or b.get("v") != 1 or not isinstance(b.get("recs"), list):
            return
        recs = []
        seq = state["seq"]
        for r in b["recs"]:
            seq += 1
            recs.append([r[0], r[1], r[2], seq])
        state["seq"] = seq
        state["bseq"] += 1
        partition = msg.subject.rsplit(".", 1)[1]
        await nc.publish(f"topo.data.bench-b.{partition}", packb({"v": 1, "src": SRC, "stream": "bench-b", "bseq": state["bseq"], "recs": recs}))

    await nc.subscribe("topo.data.bench-a.*", cb=on_batch, pending_msgs_limit=10_000_000, pending_bytes_limit=4 * 1024 ** 3)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


asyncio.run(main(sys.argv[1]))
