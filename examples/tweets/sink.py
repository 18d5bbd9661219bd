"""The end of the tweets pipeline in Python, the twin of sink.ts: reads
``top-hashtags``, keeps running totals (``windows``, ``mentions``) in its
keyed state and logs each top-N record (``topo logs sink``).

    topo deploy examples/tweets/sink.py
"""
from datetime import datetime, timezone

from topo import Computation, Metadata


class Sink(Computation):
    def metadata(self):
        return Metadata(name="sink", istreams=["top-hashtags"], ostreams=[], delivery={"top-hashtags": "at-least-once"})

    def process_record(self, ctx, record):
        window, instance, top = record.value["window"], record.value["instance"], record.value["top"]
        windows = ctx.state.get("windows", 0) + 1
        mentions = ctx.state.get("mentions", 0) + sum(t["count"] for t in top)
        ctx.state["windows"] = windows
        ctx.state["mentions"] = mentions
        when = datetime.fromtimestamp(window / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        tags = ", ".join(f"#{t['tag']} {t['count']}" for t in top)
        ctx.log.info(
            f"top hashtags of {when} (counter {instance}): {tags}; "
            f"running total: {mentions} mentions in {windows} top-N records",
            extra={"window": window, "instance": instance, "windows": windows, "mentions": mentions},
        )
