"""topo.bridge end to end: a real local topology (`node bin/topo.mjs up`: nats-server, controller, a
worker), a Python registered producer feeding the TS keyed counter test/fixtures/bridge-counter-v1.ts
through two hot swaps, read back by a Python registered consumer; a slow Python consumer holding a
fast Python producer at its window; pause leases, fences and garbage control requests.

Needs node (the repo's bin/topo.mjs), nats-server (on PATH or /usr/sbin) and nats-py.
"""
import asyncio
import json
import os
import shutil
import subprocess
import tempfile
import time

import msgpack
import nats
import pytest

from topo.bridge import BridgeError, Consumer, Producer

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
TOPO = [shutil.which("node") or "node", os.path.join(REPO, "bin", "topo.mjs")]
V1 = os.path.join(REPO, "test", "fixtures", "bridge-counter-v1.ts")
V2 = os.path.join(REPO, "test", "fixtures", "bridge-counter-v2.ts")


def topo(args, cwd, timeout=120):
    env = {k: v for k, v in os.environ.items() if k not in ("TOPO_NATS_URL", "TOPO_DEBUG")}
    r = subprocess.run(TOPO + args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return r.returncode, r.stdout, r.stderr


@pytest.fixture(scope="module")
def topology():
    d = tempfile.mkdtemp(prefix="topo-pybridge-")
    code, out, err = topo(["up", "--workers", "1"], cwd=d, timeout=180)
    try:
        assert code == 0, f"topo up failed: {out}\n{err}"
        with open(os.path.join(d, ".topo", "run.json"), encoding="utf-8") as f:
            run_info = json.load(f)
        # `topo up` turns authentication on: a client connects with the admin credentials run.json names.
        assert run_info.get("credsFile"), f"run.json names no credentials: {run_info}"
        yield {"dir": d, "url": run_info["natsUrl"], "creds": run_info["credsFile"]}
    finally:
        topo(["down"], cwd=d, timeout=60)
        shutil.rmtree(d, ignore_errors=True)


async def connect(topology):
    return await nats.connect(topology["url"], user_credentials=topology["creds"])


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 170))


async def wait_for(fn, what, timeout=15.0, interval=0.1):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if asyncio.iscoroutine(v):
            v = await v
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(interval)


def test_producer_loses_nothing_through_two_swaps(topology):
    d = topology["dir"]
    code, out, err = topo(["deploy", V1], cwd=d)
    assert code == 0, err

    async def main():
        nc = await connect(topology)
        try:
            outputs = []
            # The counter's output, read by a registered consumer group (the counter owes it credit).
            audit = await Consumer.start(nc, "bridge-out", group="pyaudit", id="py-audit")

            async def read():
                async for r in audit:
                    outputs.append((r.key, r.value["seq"], r.value["count"], r.value["version"]))

            reader = asyncio.ensure_future(read())
            p = await Producer.start(nc, ["bridge-in"], id="py-swap")
            total, keys = 30_000, 32
            sent = {}

            async def produce(n):
                for _ in range(n):
                    k = f"k{sum(sent.values()) % keys}"
                    sent[k] = sent.get(k, 0) + 1
                    await p.produce("bridge-in", k, {"seq": sent[k]})

            async def swaps():
                loop = asyncio.get_running_loop()
                a = await loop.run_in_executor(None, lambda: topo(["swap", "bridge-counter", V2], cwd=d))
                b = await loop.run_in_executor(None, lambda: topo(["swap", "bridge-counter", V1], cwd=d))
                return a, b

            await produce(3_000)
            sw = asyncio.ensure_future(swaps())
            while sum(sent.values()) < total:
                await produce(200)
                await asyncio.sleep(0.01)
                # Never done before both swaps are: records must be produced during their pauses.
                if sum(sent.values()) >= total - 1_000 and not sw.done():
                    await asyncio.sleep(0.05)
            (ca, oa, ea), (cb, ob, eb) = await sw
            assert ca == 0, f"first swap failed: {oa}\n{ea}"
            assert cb == 0, f"second swap failed: {ob}\n{eb}"
            await p.flush()
            await wait_for(lambda: len(outputs) >= total, f"{total} outputs", timeout=30)
            await asyncio.sleep(0.5)
            by_key = {}
            for k, seq, count, version in outputs:
                by_key.setdefault(k, []).append((seq, count, version))
            lost = dup = disorder = bad = 0
            versions = set()
            for k, n in sent.items():
                rs = by_key.get(k, [])
                seqs = [s for s, _, _ in rs]
                versions.update(v for _, _, v in rs)
                dup += len(seqs) - len(set(seqs))
                lost += len(set(range(1, n + 1)) - set(seqs))
                disorder += sum(1 for a, b in zip(seqs, seqs[1:]) if b < a)
                bad += sum(1 for s, c, _ in rs if s != c)
            print(f"python bridge swap: sent {total}, outputs {len(outputs)}, lost {lost}, duplicated {dup}, pauses {p.pauses}")
            assert (lost, dup, disorder, bad) == (0, 0, 0, 0)
            assert len(outputs) == total
            assert versions == {1, 2}
            assert p.pauses >= 2
            await wait_for(lambda: p.debt() == 0, "the producer's debt to reach 0")
            # Listed by the controller, as a Python bridge.
            code, out, _ = topo(["status", "--json"], cwd=d)
            st = json.loads(out)
            prod = [b for b in st["bridges"]["producers"] if b["id"] == "py-swap"]
            assert prod and prod[0]["lang"] == "python"
            assert any(c["id"] == "py-audit" and c["group"] == "pyaudit" for c in st["bridges"]["consumers"])
            await p.close()
            await audit.close()
            reader.cancel()
        finally:
            await nc.close()
            topo(["kill", "bridge-counter"], cwd=d)

    run(main())


def test_slow_consumer_holds_a_fast_producer_at_its_window(topology):
    async def main():
        nc = await connect(topology)
        try:
            window, total = 4096, 20_000
            c = await Consumer.start(nc, "pybridge-fc", group="pyslow", id="py-slow")
            p = await Producer.start(nc, ["pybridge-fc"], id="py-fast", window=window)
            seen = set()
            dup = 0

            async def read():
                nonlocal dup
                n = 0
                async for r in c:
                    k = (r.key, r.value)
                    if k in seen:
                        dup += 1
                    seen.add(k)
                    n += 1
                    if n % 100 == 0:
                        await asyncio.sleep(0.01)
                    if n == total:
                        return

            reader = asyncio.ensure_future(read())
            max_debt = 0
            for i in range(total):
                await p.produce("pybridge-fc", f"k{i % 8}", i)
                max_debt = max(max_debt, p.debt())
            await p.flush()
            await asyncio.wait_for(reader, 60)
            print(f"python bridge flow control: sent {total}, received {len(seen)}, max debt {max_debt} (window {window}), waits {p.waits}")
            assert len(seen) == total and dup == 0
            assert window // 2 < max_debt <= window + 256
            assert p.waits > 0
            await c.close()
            # The group left: the producer owes it nothing any more.
            await wait_for(lambda: p.debt() == 0, "debt 0 once the consumer left")
            await p.close()
        finally:
            await nc.close()

    run(main())


def test_pause_lease_fences_and_garbage_control(topology):
    async def main():
        nc = await connect(topology)
        try:
            c = await Consumer.start(nc, "pybridge-pause", group="pypause", id="py-pause-reader")
            p = await Producer.start(nc, ["pybridge-pause"], id="py-paused")
            got = []

            async def read():
                async for r in c:
                    got.append(r.seq)

            reader = asyncio.ensure_future(read())
            for i in range(10):
                await p.produce("pybridge-pause", f"k{i}", i)
            await p.flush()
            await wait_for(lambda: len(got) == 10, "10 records before the pause")

            async def ctl(body):
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                msg = await nc.request("topo.bridge.ctl.py-paused", data, timeout=5)
                return json.loads(msg.data.decode())

            # Garbage: refused, and nothing is paused.
            for body, code in [(b"junk", "BAD_REQUEST"), ({"op": "release", "instanceId": "py-paused"}, "BAD_REQUEST"),
                               ({"op": "pause", "instanceId": "py-paused", "leaseMs": -1}, "BAD_REQUEST"),
                               ({"op": "pause", "instanceId": "a.b"}, "BAD_REQUEST"),
                               ({"op": "pause", "instanceId": "py-paused", "swapId": "x y"}, "BAD_REQUEST"),
                               ({"op": "pause", "instanceId": "someone-else"}, "NOT_FOUND")]:
                r = await ctl(body)
                assert r["ok"] is False and r["error"]["code"] == code, (body, r)
            assert not p.paused
            # A pause reports the fence (the last seq published) and holds output until its lease ends.
            r = await ctl({"op": "pause", "instanceId": "py-paused", "swapId": "s1", "leaseMs": 600})
            assert r["ok"] and r["producer"] == "py-paused" and r["fences"] == {"pybridge-pause": 10}
            assert sum(1 for _ in r["partitionFences"]["pybridge-pause"]) >= 1
            assert p.paused
            for i in range(10, 20):
                await p.produce("pybridge-pause", f"k{i}", i)
            await asyncio.sleep(0.3)
            assert len(got) == 10, "a paused producer published"
            await wait_for(lambda: len(got) == 20, "the held records after the lease ended", timeout=5)
            assert not p.paused
            # pause then resume
            r = await ctl({"op": "pause", "instanceId": "py-paused", "leaseMs": 5000})
            assert r["ok"] and r["fences"] == {"pybridge-pause": 20}
            await p.produce("pybridge-pause", "k", 20)
            await asyncio.sleep(0.2)
            assert len(got) == 20
            r = await ctl({"op": "resume", "instanceId": "py-paused"})
            assert r["ok"]
            await wait_for(lambda: len(got) == 21, "the held record after resume", timeout=5)
            assert sorted(got) == list(range(1, 22))
            # Invalid credits are ignored and counted.
            for data in (msgpack.packb({"g": "pypause", "n": -3}), b"\xc1", msgpack.packb({"g": "bad group", "n": 1})):
                await nc.publish("topo.fc.py-paused", data)
            await nc.flush()
            await wait_for(lambda: p.malformed_credits == 3, "3 malformed credits")
            # Bad arguments are refused before anything is sent.
            with pytest.raises(BridgeError):
                await Producer.start(nc, ["not a stream"])
            with pytest.raises(BridgeError):
                await Consumer.start(nc, "s", group="9bad")
            # A consumer group named like a computation is refused by the controller.
            code, _, err = topo(["deploy", V1], cwd=topology["dir"])
            assert code == 0, err
            try:
                with pytest.raises(BridgeError) as e:
                    await Consumer.start(nc, "x", group="bridge-counter")
                assert e.value.code == "CONFLICT"
            finally:
                topo(["kill", "bridge-counter"], cwd=topology["dir"])
            await p.close()
            await c.close()
            reader.cancel()
        finally:
            await nc.close()

    run(main())


def test_a_client_without_credentials_is_refused(topology):
    """`topo up` runs with authentication on: an anonymous bridge never gets a connection."""

    async def main():
        with pytest.raises(Exception) as e:
            await nats.connect(topology["url"], allow_reconnect=False, max_reconnect_attempts=0,
                               connect_timeout=5)
        assert "Authorization Violation" in repr(e.value), repr(e.value)

    run(main())
