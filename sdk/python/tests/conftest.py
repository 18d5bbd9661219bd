"""Shared helpers: the protocol vectors and a driver for a `python -m topo run` process."""
import fcntl
import json
import os
import socket
import struct
import subprocess
import sys
import tempfile
import textwrap

import msgpack
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
VECTORS = os.path.normpath(os.path.join(HERE, "..", "..", "..", "protocol", "vectors"))
SDK = os.path.normpath(os.path.join(HERE, ".."))


SCHEMAS = os.path.normpath(os.path.join(VECTORS, "..", "schemas"))
_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def schema_errors(schema, value, path="(root)"):
    """The JSON Schema (draft 2020-12) subset protocol/schemas/operator-*.json use, checked here so the suite
    needs no validator package: type, const, enum, properties/required/additionalProperties, items,
    prefixItems, min/maxItems, minimum/maximum/exclusiveMinimum, maxLength, anyOf. Keywords it does not
    know fail loudly, so a schema that grows is noticed."""
    known = {"$schema", "title", "description", "type", "const", "enum", "properties", "required", "additionalProperties",
             "items", "prefixItems", "minItems", "maxItems", "minimum", "maximum", "exclusiveMinimum", "maxLength", "anyOf"}
    unknown = set(schema) - known
    assert not unknown, f"schema keyword(s) {unknown} at {path}: teach schema_errors"
    errs = []
    if "anyOf" in schema:
        if all(schema_errors(s, value, path) for s in schema["anyOf"]):
            errs.append(f"{path}: matches none of anyOf")
    t = schema.get("type")
    if t is not None:
        kinds = t if isinstance(t, list) else [t]

        def is_kind(k):
            if k == "integer":
                return type(value) is int or (type(value) is float and value.is_integer())
            if k == "number":
                return type(value) in (int, float)
            return type(value) is _TYPES[k]
        if not any(is_kind(k) for k in kinds):
            return [f"{path}: {type(value).__name__} is not {t}"]
    if "const" in schema and value != schema["const"]:
        errs.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "enum" in schema and value not in schema["enum"]:
        errs.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if type(value) in (int, float):
        if "minimum" in schema and value < schema["minimum"]:
            errs.append(f"{path}: {value} < {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            errs.append(f"{path}: {value} > {schema['maximum']}")
        if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
            errs.append(f"{path}: {value} <= {schema['exclusiveMinimum']}")
    if type(value) is str and "maxLength" in schema and len(value) > schema["maxLength"]:
        errs.append(f"{path}: longer than {schema['maxLength']}")
    if type(value) is dict:
        props = schema.get("properties", {})
        for k in schema.get("required", []):
            if k not in value:
                errs.append(f"{path}: {k} is required")
        for k, v in value.items():
            if k in props:
                errs += schema_errors(props[k], v, f"{path}.{k}")
            elif schema.get("additionalProperties") is False:
                errs.append(f"{path}: {k} is not allowed")
    if type(value) is list:
        prefix = schema.get("prefixItems", [])
        for i, v in enumerate(value):
            if i < len(prefix):
                errs += schema_errors(prefix[i], v, f"{path}[{i}]")
            elif schema.get("items") is False:
                errs.append(f"{path}[{i}]: no item allowed here")
            elif isinstance(schema.get("items"), dict):
                errs += schema_errors(schema["items"], v, f"{path}[{i}]")
        if len(value) < schema.get("minItems", 0):
            errs.append(f"{path}: fewer than {schema['minItems']} items")
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errs.append(f"{path}: more than {schema['maxItems']} items")
    return errs
_REPLY_SCHEMA = {"hello": "operator-hello", "completion": "operator-completion", "snapshot": "operator-snapshot-reply",
                 "error": "operator-error"}
_validators = {}


def check_reply_schema(frame):
    """Every frame an operator writes must match the worker's schema (protocol/schemas/operator-*.json)."""
    name = _REPLY_SCHEMA.get(frame.get("op"))
    assert name is not None, f"unexpected frame op {frame.get('op')!r}"
    schema = _validators.get(name)
    if schema is None:
        with open(os.path.join(SCHEMAS, name + ".json"), encoding="utf-8") as f:
            schema = _validators[name] = json.load(f)
    errors = schema_errors(schema, frame)
    assert not errors, f"{name}: " + "; ".join(errors[:5])


def load_vectors(name):
    with open(os.path.join(VECTORS, name), encoding="utf-8") as f:
        return json.load(f)


def batch(src, stream, bseq, recs, **extra):
    return msgpack.packb({"v": 1, "src": src, "stream": stream, "bseq": bseq, "recs": recs, **extra}, use_bin_type=True)


class Operator:
    """A `python -m topo run` child with fds 3 (requests) and 4 (replies), as a worker starts it."""

    def __init__(self, target, name=None, env=None, progress=False, cwd=None, extra_args=None, socketpair=False):
        self.socketpair = socketpair
        if socketpair:
            # What Node's spawn hands a child for a "pipe" stdio entry: one end of a non-blocking socketpair.
            a, b = socket.socketpair()
            c, d = socket.socketpair()
            for s in (a, b, c, d):
                s.setblocking(False)
            self._socks = (a, b, c, d)
            r_in, w_in = os.dup(b.fileno()), os.dup(a.fileno())
            r_out, w_out = os.dup(c.fileno()), os.dup(d.fileno())
            for s in self._socks:
                s.close()
            os.set_blocking(w_in, True)
            os.set_blocking(r_out, True)
        else:
            r_in, w_in = os.pipe()    # worker -> operator (its fd 3)
            r_out, w_out = os.pipe()  # operator -> worker (its fd 4)
        # Above fd 10 so that the shell's "3<&N 4>&M" never meets an end that is itself 3 or 4.
        r_in, w_out = [self._high(fd) for fd in (r_in, w_out)]
        self.progress_path = None
        e = dict(os.environ)
        e.update({"TOPO_OPERATOR_PROTOCOL": "1", "TOPO_OPERATOR_IN": "3", "TOPO_OPERATOR_OUT": "4",
                  "TOPO_INSTANCE_ID": "t-0-abc123", "TOPO_INSTANCE_INDEX": "0", "TOPO_INSTANCE_COUNT": "1",
                  "PYTHONPATH": SDK + os.pathsep + e.get("PYTHONPATH", "")})
        e.pop("TOPO_PROGRESS_FILE", None)
        e.pop("TOPO_COMPUTATION", None)
        if name:
            e["TOPO_COMPUTATION"] = name
        if progress:
            fd, self.progress_path = tempfile.mkstemp(prefix="topo-progress-")
            os.write(fd, b"\0" * 16)
            os.close(fd)
            e["TOPO_PROGRESS_FILE"] = self.progress_path
        if env:
            e.update(env)

        # The pipe ends are passed with pass_fds, then a tiny exec shim moves them to fds 3 and 4
        # (as the worker's spawn does) and becomes `python -m topo run`.
        shim = ("import os, sys; a, b = int(sys.argv[1]), int(sys.argv[2]); os.dup2(a, 3); os.dup2(b, 4); "
                "os.close(a); os.close(b); os.execv(sys.executable, [sys.executable, '-m', 'topo', 'run'] + sys.argv[3:])")
        args = [sys.executable, "-c", shim, str(r_in), str(w_out), target] + (extra_args or [])
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     pass_fds=(r_in, w_out), env=e, cwd=cwd)
        os.close(r_in)
        os.close(w_out)
        self.w = w_in
        self.r = r_out
        self.next_id = 1

    @staticmethod
    def _high(fd):
        high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
        os.close(fd)
        return high

    def _read(self, n):
        out = b""
        while len(out) < n:
            chunk = os.read(self.r, n - len(out))
            if not chunk:
                return None
            out += chunk
        return out

    def read_frame(self):
        head = self._read(4)
        if head is None:
            return None
        (n,) = struct.unpack(">I", head)
        body = self._read(n)
        frame = msgpack.unpackb(body, raw=False)
        check_reply_schema(frame)
        return frame

    def request(self, op, **fields):
        rid = self.next_id
        self.next_id += 1
        body = msgpack.packb({"op": op, "id": rid, **fields}, use_bin_type=True)
        os.write(self.w, struct.pack(">I", len(body)) + body)
        reply = self.read_frame()
        assert reply is not None, f"no reply to {op}; stderr: {self.stderr()}"
        assert reply["id"] == rid
        return reply

    def close_input(self):
        if self.w is not None:
            if self.socketpair:  # other ends may be open in the child's parent shim: shut down to send EOF
                s = socket.socket(fileno=os.dup(self.w))
                s.shutdown(socket.SHUT_WR)
                s.close()
            os.close(self.w)
            self.w = None

    def wait(self, timeout=10):
        return self.proc.wait(timeout=timeout)

    def stderr(self):
        if self.proc.poll() is None:
            return "(running)"
        return self.proc.stderr.read().decode()

    def progress(self):
        with open(self.progress_path, "rb") as f:
            return list(struct.unpack("<iiii", f.read(16)))

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.close_input()
        try:
            os.close(self.r)
        except OSError:
            pass
        self.proc.stdout.close()
        self.proc.stderr.close()
        if self.progress_path:
            os.unlink(self.progress_path)


@pytest.fixture
def write_comp(tmp_path):
    """Writes a computation file and returns its path."""
    def write(source, name="comp.py"):
        p = tmp_path / name
        p.write_text(textwrap.dedent(source))
        return str(p)
    return write


@pytest.fixture
def operator():
    started = []

    def start(target, **kw):
        op = Operator(target, **kw)
        started.append(op)
        return op
    yield start
    for op in started:
        op.kill()
