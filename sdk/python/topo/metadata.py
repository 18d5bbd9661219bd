"""Computation metadata: validation and the normalized form (PROTOCOL.md "Names";
protocol/vectors/metadata.json). Errors name the field by its path: ``name``,
``istreams[1]``, ``istreams[0].grouping``, ``ostreams[2]``, ``(root)``."""
from __future__ import annotations

import re
from typing import Any, Iterable, Optional, Union

__all__ = ["GROUPINGS", "NAME_PATTERN", "Stream", "Metadata", "InvalidMetadataError", "validate_metadata"]

GROUPINGS = ("shuffle", "key", "broadcast")
NAME_PATTERN = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
_NAME_MESSAGE = 'must start with a letter and contain only letters, digits, "_" or "-" (at most 64 characters)'


class InvalidMetadataError(ValueError):
    """Metadata that failed validation (code INVALID_METADATA). ``detail`` is ``[{path, message}]``."""

    code = "INVALID_METADATA"

    def __init__(self, message: str, detail: list):
        super().__init__(message)
        self.detail = detail


class Stream:
    """An input stream with its grouping: ``Stream("clicks", grouping="key")``."""

    __slots__ = ("stream", "grouping")

    def __init__(self, stream: str, grouping: str = "shuffle"):
        self.stream = stream
        self.grouping = grouping

    def __repr__(self) -> str:
        return f"Stream({self.stream!r}, grouping={self.grouping!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Stream) and (self.stream, self.grouping) == (other.stream, other.grouping)

    def __hash__(self) -> int:
        return hash((self.stream, self.grouping))


IStream = Union[str, Stream, tuple, dict]


def _is_name(v: Any) -> bool:
    return type(v) is str and NAME_PATTERN.fullmatch(v) is not None


def _is_int(v: Any) -> bool:
    return type(v) is int


def _check_hints(h: Any, issues: list) -> Optional[dict]:
    if not isinstance(h, dict):
        issues.append(("hints", "must be an object"))
        return None
    out = {}
    for k in h:
        if k not in ("cpu", "fuse", "autoscale", "traceSample"):
            issues.append(("hints", f'unknown field "{k}"'))
    if h.get("cpu") is not None:
        if h["cpu"] not in ("heavy", "light"):
            issues.append(("hints.cpu", 'must be "heavy" or "light"'))
        else:
            out["cpu"] = h["cpu"]
    if h.get("fuse") is not None:
        if type(h["fuse"]) is not bool:
            issues.append(("hints.fuse", "must be a boolean"))
        else:
            out["fuse"] = h["fuse"]
    a = h.get("autoscale")
    if a is not None:
        if not isinstance(a, dict):
            issues.append(("hints.autoscale", "must be { min, max }"))
        else:
            bad = False
            for k in a:
                if k not in ("min", "max"):
                    issues.append(("hints.autoscale", f'unknown field "{k}"'))
                    bad = True
            for k in ("min", "max"):
                if not (_is_int(a.get(k)) and 1 <= a[k] <= 1024):
                    issues.append((f"hints.autoscale.{k}", "must be an integer from 1 to 1024"))
                    bad = True
            if not bad and a["min"] > a["max"]:
                issues.append(("hints.autoscale", "min must be at most max"))
                bad = True
            if not bad:
                out["autoscale"] = {"min": a["min"], "max": a["max"]}
    t = h.get("traceSample")
    if t is not None:
        # A source's share of records that start a trace (PROTOCOL.md, Traces); the worker hosting it samples.
        if type(t) not in (int, float) or not (0 <= t <= 1):
            issues.append(("hints.traceSample", "must be a number from 0 to 1"))
        else:
            out["traceSample"] = t
    return out


_MESSAGE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_BASE64 = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
MAX_MESSAGE_NAME = 256
MAX_DESCRIPTOR_CHARS = 64 * 1024
MAX_TYPED_STREAMS = 32
MAX_TYPES_CHARS = 192 * 1024


def _check_types(t: Any, streams: set, issues: list) -> Optional[dict]:
    """``types``: stream -> {message, descriptor, fingerprint} (PROTOCOL.md "Typed streams"), as
    protocol/metadata.ts checks it; normalized with the streams sorted."""
    if not isinstance(t, dict):
        issues.append(("types", "must be an object: stream -> { message, descriptor, fingerprint }"))
        return None
    out = {}
    ok = True
    for stream in sorted(t, key=str):
        path = f"types.{stream}"
        d = t[stream]
        if not _is_name(stream):
            issues.append((path, _NAME_MESSAGE))
            ok = False
            continue
        if not isinstance(d, dict):
            issues.append((path, "must be { message, descriptor, fingerprint }"))
            ok = False
            continue
        for k in d:
            if k not in ("message", "descriptor", "fingerprint"):
                issues.append((path, f'unknown field "{k}"'))
                ok = False
        m, desc, fp = d.get("message"), d.get("descriptor"), d.get("fingerprint")
        if not (type(m) is str and len(m) <= MAX_MESSAGE_NAME and _MESSAGE_NAME.fullmatch(m)):
            issues.append((f"{path}.message", 'must be a protobuf message full name, e.g. "demo.Tweet"'))
            ok = False
        if not (type(desc) is str and 1 <= len(desc) <= MAX_DESCRIPTOR_CHARS and _BASE64.fullmatch(desc)):
            issues.append((f"{path}.descriptor", f"must be a base64 FileDescriptorSet of at most {MAX_DESCRIPTOR_CHARS} characters"))
            ok = False
        if not (type(fp) is str and _SHA256_HEX.fullmatch(fp)):
            issues.append((f"{path}.fingerprint", "must be the sha256 hex of the descriptor"))
            ok = False
        if stream not in streams:
            issues.append((path, f'stream "{stream}" is neither an istream nor an ostream'))
            ok = False
        out[stream] = {"message": m, "descriptor": desc, "fingerprint": fp}
    if len(t) > MAX_TYPED_STREAMS:
        issues.append(("types", f"at most {MAX_TYPED_STREAMS} typed streams"))
        ok = False
    if ok and sum(len(d["descriptor"]) for d in out.values()) > MAX_TYPES_CHARS:
        issues.append(("types", f"descriptors must add up to at most {MAX_TYPES_CHARS} characters"))
        ok = False
    return out if ok else None


def _istream(v: Any, path: str, issues: list) -> Optional[dict]:
    if isinstance(v, Stream):
        v = {"stream": v.stream, "grouping": v.grouping}
    elif isinstance(v, tuple):
        if len(v) != 2:
            issues.append((path, "a tuple istream must be (stream, grouping)"))
            return None
        v = {"stream": v[0], "grouping": v[1]}
    if type(v) is str:
        if not _is_name(v):
            issues.append((path, _NAME_MESSAGE))
            return None
        return {"stream": v, "grouping": "shuffle"}
    if not isinstance(v, dict):
        issues.append((path, "must be a stream name or { stream, grouping }"))
        return None
    ok = True
    for k in v:
        if k not in ("stream", "grouping"):
            issues.append((path, f'unknown field "{k}" (an istream is {{ stream, grouping }})'))
            ok = False
    if "stream" not in v:
        issues.append((f"{path}.stream", "is required"))
        ok = False
    elif not _is_name(v["stream"]):
        issues.append((f"{path}.stream", _NAME_MESSAGE))
        ok = False
    grouping = v.get("grouping", "shuffle")
    if grouping is None:
        grouping = "shuffle"
    if grouping not in GROUPINGS or type(grouping) is not str:
        issues.append((f"{path}.grouping", f'must be one of "shuffle", "key", "broadcast", got {grouping!r}'))
        ok = False
    return {"stream": v["stream"], "grouping": grouping} if ok else None


def validate_metadata(value: Any) -> dict:
    """Validates metadata (a Metadata, or a mapping with name/istreams/ostreams[/hints]) and returns
    the normalized form ``{name, istreams: [{stream, grouping}], ostreams[, hints]}``. Other fields are
    dropped. Raises InvalidMetadataError naming every bad field."""
    if isinstance(value, Metadata):
        value = value.raw
    issues: list = []
    if not isinstance(value, dict):
        issues.append(("(root)", "must be an object { name, istreams, ostreams }"))
        raise _error(value, issues)
    name = value.get("name")
    if "name" not in value:
        issues.append(("name", "is required"))
    elif not _is_name(name):
        issues.append(("name", _NAME_MESSAGE))
    istreams: list = []
    if "istreams" not in value:
        issues.append(("istreams", "is required (an empty list makes a source)"))
    elif not isinstance(value["istreams"], (list, tuple)):
        issues.append(("istreams", "must be a list of stream names or { stream, grouping }"))
    else:
        seen = set()
        for i, s in enumerate(value["istreams"]):
            n = _istream(s, f"istreams[{i}]", issues)
            if n is None:
                continue
            if n["stream"] in seen:
                issues.append((f"istreams[{i}]", f'stream "{n["stream"]}" is listed twice'))
            seen.add(n["stream"])
            istreams.append(n)
    ostreams: list = []
    if "ostreams" not in value:
        issues.append(("ostreams", "is required (an empty list makes a sink)"))
    elif not isinstance(value["ostreams"], (list, tuple)):
        issues.append(("ostreams", "must be a list of stream names"))
    else:
        seen = set()
        for i, s in enumerate(value["ostreams"]):
            if not _is_name(s):
                issues.append((f"ostreams[{i}]", _NAME_MESSAGE))
                continue
            if s in seen:
                issues.append((f"ostreams[{i}]", f'stream "{s}" is listed twice'))
            seen.add(s)
            ostreams.append(s)
    hints = None
    if value.get("hints") is not None:
        hints = _check_hints(value["hints"], issues)
    types = None
    if value.get("types") is not None:
        types = _check_types(value["types"], {s["stream"] for s in istreams} | set(ostreams), issues)
    delivery = None
    if value.get("delivery") is not None:
        delivery = _check_delivery(value["delivery"], {s["stream"] for s in istreams} | set(ostreams), issues)
    if issues:
        raise _error(value, issues)
    out = {"name": name, "istreams": istreams, "ostreams": ostreams}
    if hints is not None:
        out["hints"] = hints
    if types:
        out["types"] = types
    if delivery:
        out["delivery"] = delivery
    return out


DELIVERIES = ("at-most-once", "at-least-once")


def _check_delivery(d: Any, streams: set, issues: list) -> Optional[dict]:
    """``delivery``: stream -> "at-most-once" | "at-least-once" (PROTOCOL.md "Delivery"). Normalized like the
    TS runtime does: only the at-least-once streams are kept, sorted."""
    if not isinstance(d, dict):
        issues.append(("delivery", 'must be an object: stream -> "at-most-once" | "at-least-once"'))
        return None
    out = {}
    for stream in sorted(d):
        mode = d[stream]
        if not (isinstance(stream, str) and _is_name(stream)):
            issues.append(("delivery", _NAME_MESSAGE))
            continue
        if mode not in DELIVERIES:
            issues.append((f"delivery.{stream}", 'must be "at-most-once" or "at-least-once"'))
            continue
        if stream not in streams:
            issues.append((f"delivery.{stream}", f'stream "{stream}" is neither an istream nor an ostream'))
            continue
        if mode == "at-least-once":
            out[stream] = mode
    return out


def _error(value: Any, issues: list) -> InvalidMetadataError:
    detail = [{"path": p, "message": m} for p, m in issues]
    who = f' of "{value["name"]}"' if isinstance(value, dict) and type(value.get("name")) is str else ""
    text = "; ".join(f"{p}: {m}" for p, m in issues)
    return InvalidMetadataError(f"invalid computation metadata{who}: {text}", detail)


class Metadata:
    """What a computation declares: ``Metadata(name="counter", istreams=[Stream("hashtags", grouping="key")],
    ostreams=["top-hashtags"])``. An istream is a str (shuffle), a ``Stream``, a ``(stream, grouping)``
    tuple or a ``{"stream": ..., "grouping": ...}`` dict. ``hints`` as in PROTOCOL.md; ``types`` declares
    typed streams (stream -> {message, descriptor, fingerprint}, see ``topo.typed``); ``delivery`` declares
    streams at-least-once (stream -> "at-least-once", README "Durability"). Validated when made
    (InvalidMetadataError)."""

    __slots__ = ("raw", "normalized")

    def __init__(self, name: str, istreams: Iterable[IStream] = (), ostreams: Iterable[str] = (), hints: Optional[dict] = None,
                 types: Optional[dict] = None, delivery: Optional[dict] = None):
        raw = {"name": name, "istreams": list(istreams) if isinstance(istreams, (list, tuple)) else istreams,
               "ostreams": list(ostreams) if isinstance(ostreams, (list, tuple)) else ostreams}
        if hints is not None:
            raw["hints"] = hints
        if types is not None:
            raw["types"] = types
        if delivery is not None:
            raw["delivery"] = delivery
        self.raw = raw
        self.normalized = validate_metadata(raw)

    @property
    def name(self) -> str:
        return self.normalized["name"]

    @property
    def istreams(self) -> list:
        return [Stream(s["stream"], s["grouping"]) for s in self.normalized["istreams"]]

    @property
    def ostreams(self) -> list:
        return list(self.normalized["ostreams"])

    @property
    def hints(self) -> Optional[dict]:
        return self.normalized.get("hints")

    @property
    def types(self) -> Optional[dict]:
        """Typed streams: stream -> {message, descriptor, fingerprint} (None when no stream is typed)."""
        t = self.normalized.get("types")
        return {k: dict(v) for k, v in t.items()} if t else None

    def to_dict(self) -> dict:
        """The normalized form (a fresh copy)."""
        n = self.normalized
        out = {"name": n["name"], "istreams": [dict(s) for s in n["istreams"]], "ostreams": list(n["ostreams"])}
        if "hints" in n:
            out["hints"] = dict(n["hints"])
        if "types" in n:
            out["types"] = {k: dict(v) for k, v in n["types"].items()}
        if "delivery" in n:
            out["delivery"] = dict(n["delivery"])
        return out

    def __repr__(self) -> str:
        return f"Metadata({self.normalized!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Metadata) and self.normalized == other.normalized
