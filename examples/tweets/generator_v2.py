"""Version 2 of the Python mock-tweets generator (generator.py), for ``topo swap``.
Same metadata and state: "next" continues the ids of version 1, so a swap
neither loses nor repeats an id. What changes: every tweet carries ``"v": 2``
and its text ends with "(v2)".

    topo swap mock-tweets-generator examples/tweets/generator_v2.py

It imports the rest from generator.py: `topo deploy` and `topo swap` take the
modules a Python file imports from its own folder along in the artifact.
"""
from generator import TICK_MS, MockTweetComputation, gen_tweets

VERSION = 2


class MockTweetComputationV2(MockTweetComputation):
    def process_timer(self, ctx, key, time):
        for tweet in gen_tweets(ctx):
            ctx.produce_record("tweets", tweet.user, {**tweet.to_dict(), "text": f"{tweet.text} (v{VERSION})", "v": VERSION})
        ctx.set_timer("tick", time + TICK_MS)
