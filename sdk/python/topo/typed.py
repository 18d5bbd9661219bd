"""Typed streams (PROTOCOL.md "Typed streams") for Python operators and producers.

A stream may declare a protobuf message type. The declaration travels in the
metadata, ``types[stream] = {message, descriptor, fingerprint}``: the message's
full name, a FileDescriptorSet (protobuf-encoded, base64) holding its file and
everything it imports, and the sha256 hex of those bytes. Message classes are
built from the descriptor with ``descriptor_pool`` and
``message_factory.GetMessageClass`` (no protoc, no generated code).

On the wire a typed record's value is the message's protobuf encoding as
msgpack bin. ``StreamTypes.decode(stream, value)`` turns it into a plain dict
(field names as in the .proto, proto3 defaults filled in, 64-bit integers as
int, enums by name, bytes as bytes, an unset message field as None): the same
value a TS computation gets. ``StreamTypes.encode(stream, value)`` takes such a
dict (enums by name or number, 64-bit integers as int or a string of digits),
a message instance, or bytes already holding the encoding, and raises
``TypeError`` naming the stream, the type and the field that does not fit.

The ``protobuf`` package is imported only when a stream is typed.
"""
from __future__ import annotations

import base64
import hashlib
from typing import Any, Optional

__all__ = ["TYPE_MISMATCH", "TypeMismatch", "StreamType", "StreamTypes", "describe_descriptor_set", "describe_message_class",
           "type_label"]

TYPE_MISMATCH = "type mismatch"
"""The dead-letter reason of a record that does not decode as its stream's type."""


class TypeMismatch(ValueError):
    """A record on a typed stream that does not decode as its type: dead-letter it with reason TYPE_MISMATCH."""


def type_label(decl: Optional[dict]) -> str:
    """``demo.Tweet (fingerprint 1a2b3c4d5e6f)``, or ``untyped (msgpack)``: as the TS runtime words it."""
    return f"{decl['message']} (fingerprint {decl['fingerprint'][:12]})" if decl else "untyped (msgpack)"


def describe_descriptor_set(data: bytes, message: str) -> dict:
    """The declaration of ``message`` from FileDescriptorSet bytes (e.g. ``protoc --descriptor_set_out --include_imports``)."""
    decl = {"message": message.lstrip("."), "descriptor": base64.b64encode(data).decode("ascii"),
            "fingerprint": hashlib.sha256(data).hexdigest()}
    _message_class(decl)  # raises when the message is not in it
    return decl


def describe_message_class(cls: Any) -> dict:
    """The declaration of a generated (``_pb2``) or built message class: its file and the files it imports.

    Its fingerprint is that of these descriptor bytes: a TS computation declaring the same .proto gets
    the same type only from the same descriptor (use ``describe_descriptor_set`` on a shared file)."""
    from google.protobuf import descriptor_pb2

    files: list = []
    seen: set = set()

    def add(fd: Any) -> None:
        if fd.name in seen:
            return
        seen.add(fd.name)
        for dep in fd.dependencies:
            add(dep)
        p = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(p)
        files.append(p)

    add(cls.DESCRIPTOR.file)
    fds = descriptor_pb2.FileDescriptorSet(file=files)
    return describe_descriptor_set(fds.SerializeToString(), cls.DESCRIPTOR.full_name)


_built: dict = {}


def _message_class(decl: dict) -> Any:
    key = (decl["fingerprint"], decl["message"])
    cls = _built.get(key)
    if cls is not None:
        return cls
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

    try:
        fds = descriptor_pb2.FileDescriptorSet.FromString(base64.b64decode(decl["descriptor"], validate=True))
        pool = descriptor_pool.DescriptorPool()
        for f in fds.file:
            pool.Add(f)
    except Exception as err:
        raise TypeError(f"the descriptor of {decl['message']} is not a valid FileDescriptorSet: {err}") from None
    try:
        desc = pool.FindMessageTypeByName(decl["message"])
    except KeyError:
        names = [f"{f.package + '.' if f.package else ''}{m.name}" for f in fds.file for m in f.message_type]
        raise TypeError(f"the descriptor defines no message {decl['message']} (messages: {', '.join(names) or 'none'})") from None
    cls = message_factory.GetMessageClass(desc)
    _built[key] = cls
    return cls


def _show(v: Any) -> str:
    if v is None:
        return "None"
    if isinstance(v, (bytes, bytearray, memoryview)):
        return "bytes"
    if isinstance(v, str):
        return repr(v if len(v) <= 40 else v[:40] + "…")
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, dict):
        return "a dict"
    return f"{type(v).__name__} {v!r}"


def _at(path: str, k: Any) -> str:
    if isinstance(k, int):
        return f"{path}[{k}]"
    return f"{path}.{k}" if path else str(k)


# FieldDescriptor.CPPTYPE_*: 1 int32, 2 int64, 3 uint32, 4 uint64, 5 double, 6 float, 7 bool, 8 enum, 9 string, 10 message
_INT_RANGES = {1: (-2**31, 2**31 - 1, "a 32-bit integer"), 3: (0, 2**32 - 1, "an unsigned 32-bit integer"),
               2: (-2**63, 2**63 - 1, "a 64-bit integer"), 4: (0, 2**64 - 1, "an unsigned 64-bit integer")}
_TYPE_BYTES = 12  # FieldDescriptor.TYPE_BYTES


def _repeated(f: Any) -> bool:
    r = getattr(f, "is_repeated", None)  # protobuf >= 5.28; `label` is gone in 7
    return bool(r) if r is not None else f.label == 3


def _scalar(f: Any, v: Any, path: str) -> Any:
    """``v`` as field ``f`` takes it, or TypeError naming the path."""
    ct = f.cpp_type
    if ct == 8:
        values = f.enum_type.values_by_name
        if isinstance(v, str) and v in values:
            return values[v].number
        if type(v) is int and v in f.enum_type.values_by_number:
            return v
        raise TypeError(f"{path}: expected a {f.enum_type.full_name} value ({', '.join(values)}), got {_show(v)}")
    if ct in _INT_RANGES:
        lo, hi, what = _INT_RANGES[ct]
        if ct in (2, 4) and isinstance(v, str) and v.lstrip("-").isdigit():
            v = int(v)
        elif isinstance(v, float) and v.is_integer() and ct in (1, 3):
            v = int(v)
        if type(v) is not int or not lo <= v <= hi:
            raise TypeError(f"{path}: expected {what}, got {_show(v)}")
        return v
    if ct in (5, 6):
        if type(v) in (int, float):
            return float(v)
        raise TypeError(f"{path}: expected a number, got {_show(v)}")
    if ct == 7:
        if type(v) is bool:
            return v
        raise TypeError(f"{path}: expected a bool, got {_show(v)}")
    if f.type == _TYPE_BYTES:
        if isinstance(v, (bytes, bytearray, memoryview)):
            return bytes(v)
        if isinstance(v, str):
            try:
                return base64.b64decode(v, validate=True)
            except Exception:
                pass
        raise TypeError(f"{path}: expected bytes (or a base64 str), got {_show(v)}")
    if isinstance(v, str):
        return v
    raise TypeError(f"{path}: expected a str, got {_show(v)}")


def _fill(msg: Any, value: Any, path: str) -> None:
    desc = msg.DESCRIPTOR
    if not isinstance(value, dict):
        raise TypeError(f"{path or '(value)'}: expected a dict (message {desc.full_name}), got {_show(value)}")
    fields = desc.fields_by_name
    for k, v in value.items():
        if v is None:
            continue
        f = fields.get(k)
        p = _at(path, k)
        if f is None:
            raise TypeError(f"{p}: no such field in {desc.full_name} (fields: {', '.join(fields)})")
        target = getattr(msg, k) if _repeated(f) or f.cpp_type == 10 else None
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            if not isinstance(v, dict):
                raise TypeError(f"{p}: expected a dict (a map), got {_show(v)}")
            vf = f.message_type.fields_by_name["value"]
            kf = f.message_type.fields_by_name["key"]
            for mk, mv in v.items():
                mp = f"{p}[{mk!r}]"
                ck = _scalar(kf, mk, mp)
                if vf.cpp_type == 10:
                    _fill(target[ck], mv, mp)
                else:
                    target[ck] = _scalar(vf, mv, mp)
        elif _repeated(f):
            if not isinstance(v, (list, tuple)):
                raise TypeError(f"{p}: expected a list (repeated {f.message_type.full_name if f.cpp_type == 10 else f.name}), got {_show(v)}")
            for i, x in enumerate(v):
                if f.cpp_type == 10:
                    _fill(target.add(), x, _at(p, i))
                else:
                    target.append(_scalar(f, x, _at(p, i)))
        elif f.cpp_type == 10:
            if hasattr(v, "DESCRIPTOR") and hasattr(v, "SerializeToString"):
                target.CopyFrom(v)
            else:
                target.SetInParent()
                _fill(target, v, p)
        else:
            setattr(msg, k, _scalar(f, v, p))


def _to_dict(msg: Any) -> dict:
    out: dict = {}
    for f in msg.DESCRIPTOR.fields:
        v = getattr(msg, f.name)
        if f.message_type is not None and f.message_type.GetOptions().map_entry:
            vf = f.message_type.fields_by_name["value"]
            out[f.name] = {k: _value(vf, x) for k, x in v.items()}
        elif _repeated(f):
            out[f.name] = [_value(f, x) for x in v]
        elif f.cpp_type == 10:
            out[f.name] = _to_dict(v) if msg.HasField(f.name) else None
        else:
            out[f.name] = _value(f, v)
    return out


def _value(f: Any, v: Any) -> Any:
    if f.cpp_type == 10:
        return _to_dict(v)
    if f.cpp_type == 8:
        ev = f.enum_type.values_by_number.get(v)
        return ev.name if ev is not None else v
    return v


class StreamType:
    """One stream's type: encode what a computation produces, decode what it receives."""

    def __init__(self, stream: str, decl: dict):
        self.stream = stream
        self.decl = decl
        self.message = decl["message"]
        self.fingerprint = decl["fingerprint"]
        self.cls = _message_class(decl)

    def encode(self, value: Any, what: Optional[str] = None) -> bytes:
        """The protobuf encoding of ``value``; TypeError naming the stream, the type and the field when it does not fit."""
        what = what or f'produce_record("{self.stream}")'
        if isinstance(value, (bytes, bytearray, memoryview)):
            data = bytes(value)
            try:
                self.cls.FromString(data)
            except Exception as err:
                raise TypeError(f"{what}: bytes given are not a valid {self.message}: {err}") from None
            return data
        if isinstance(value, self.cls):
            return value.SerializeToString()
        msg = self.cls()
        try:
            _fill(msg, value, "")
        except TypeError as err:
            raise TypeError(f"{what}: value does not fit {self.message}: {err}") from None
        except ValueError as err:  # protobuf's own range checks
            raise TypeError(f"{what}: value does not fit {self.message}: {err}") from None
        return msg.SerializeToString()

    def decode(self, value: Any) -> dict:
        """The message a record's value holds, as a dict; TypeMismatch saying what failed."""
        if not isinstance(value, (bytes, bytearray, memoryview)):
            raise TypeMismatch(f'stream "{self.stream}" is typed {type_label(self.decl)}: expected its protobuf encoding (msgpack bin), '
                               f"got {_show(value)}")
        try:
            return _to_dict(self.cls.FromString(bytes(value)))
        except Exception as err:
            raise TypeMismatch(f'stream "{self.stream}" is typed {type_label(self.decl)}: the record does not decode as {self.message}: '
                               f"{type(err).__name__}: {err}") from None


class StreamTypes:
    """The typed streams of one computation. ``of(metadata)`` is None when it types none (nothing to do)."""

    def __init__(self, types: dict):
        self.by_stream = {s: StreamType(s, d) for s, d in types.items()}

    @classmethod
    def of(cls, metadata: Any) -> Optional["StreamTypes"]:
        types = metadata.get("types") if isinstance(metadata, dict) else getattr(metadata, "types", None)
        return cls(types) if types else None

    def get(self, stream: str) -> Optional[StreamType]:
        return self.by_stream.get(stream)

    def encode(self, stream: str, value: Any) -> Any:
        """``value`` encoded when ``stream`` is typed, else unchanged (TypeError when it does not fit)."""
        t = self.by_stream.get(stream)
        return t.encode(value) if t is not None else value

    def decode(self, stream: str, value: Any) -> Any:
        """``value`` decoded when ``stream`` is typed, else unchanged (TypeMismatch when it does not decode)."""
        t = self.by_stream.get(stream)
        return t.decode(value) if t is not None else value
