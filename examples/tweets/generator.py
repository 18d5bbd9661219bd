"""A source of mock tweets in Python, the twin of generator.ts (and the seed's
MockTweetComputation): driven only by timers, every TICK_MS it emits
TWEETS_PER_TICK tweets ``{id, user, text}`` keyed by user, with 0-3 hashtags
from a vocabulary where the first tags are far more popular than the last.

Ids are unique across instances (instance i of n uses i, i+n, i+2n, ...) and
continue across a hot swap: the counter lives in keyed state under "next".

    topo deploy examples/tweets/generator.py
"""
import random

from topo import Computation, Metadata, now_ms

TICK_MS = 100
TWEETS_PER_TICK = 50

# Most popular first; mixed case on purpose (the hashtags stage lower-cases).
VOCABULARY = [
    "TypeScript", "nats", "streaming", "Rust", "python", "golang", "Kafka", "devops",
    "opensource", "webdev", "databases", "latency", "WASM", "observability", "linux", "coffee",
]
USERS = ["ada", "alan", "grace", "edsger", "barbara", "donald", "ken", "margaret", "linus", "radia"]
PHRASES = [
    "shipping a new release today",
    "reading about backpressure again",
    "who else is debugging on a friday",
    "the benchmark numbers are in",
    "pair programming beats code review",
    "finally migrated the last service",
    "hot take: logs are a stream",
    "one small operator at a time",
]
# Zipf-like weights (1/rank): the first tag is ~16 times as likely as the last.
WEIGHTS = [1 / (rank + 1) for rank in range(len(VOCABULARY))]


def hashtags():
    """0-3 distinct hashtags: none 20%, one 40%, two 25%, three 15%."""
    r = random.random()
    n = 0 if r < 0.2 else 1 if r < 0.6 else 2 if r < 0.85 else 3
    tags = []
    while len(tags) < n:
        tag = random.choices(VOCABULARY, WEIGHTS)[0]
        if tag not in tags:
            tags.append(tag)
    return tags


class Tweet:
    def __init__(self, id, user, text):
        self.id, self.user, self.text = id, user, text

    def to_dict(self):
        return {"id": self.id, "user": self.user, "text": self.text}


def gen_tweets(ctx):
    """TWEETS_PER_TICK tweets, numbered on from state "next" (unique per instance)."""
    nxt = ctx.state.get("next", 0)
    count, index = ctx.instance.count, ctx.instance.index
    tweets = []
    for i in range(TWEETS_PER_TICK):
        text = " ".join([random.choice(PHRASES)] + [f"#{t}" for t in hashtags()])
        tweets.append(Tweet((nxt + i) * count + index, random.choice(USERS), text))
    ctx.state["next"] = nxt + TWEETS_PER_TICK
    return tweets


class MockTweetComputation(Computation):
    def init(self, ctx):
        ctx.set_timer("tick", now_ms())

    def process_timer(self, ctx, key, time):
        for tweet in gen_tweets(ctx):
            ctx.produce_record("tweets", tweet.user, tweet.to_dict())
        # From the scheduled time, not "now", so a late tick does not shift the rhythm (as generator.ts).
        ctx.set_timer("tick", time + TICK_MS)

    def metadata(self):
        return Metadata(name="mock-tweets-generator", istreams=[], ostreams=["tweets"], delivery={"tweets": "at-least-once"})
