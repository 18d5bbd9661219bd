"""``python -m topo run file.py[:Class] [--name N]`` and ``python -m topo describe file.py[:Class] [--name N]``."""
from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys

from . import __version__


def _fail(message: str, status: int = 1) -> int:
    print(f"topo: {message}".replace("\n", " "), file=sys.stderr)
    return status


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m topo", description="topo Python SDK")
    ap.add_argument("--version", action="version", version=f"topo-python {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for cmd, helptext in (("run", "serve the operator protocol on fds 3/4 (started by a topo worker)"),
                          ("describe", "print the normalized metadata as JSON")):
        p = sub.add_parser(cmd, help=helptext)
        p.add_argument("file", help="file.py or file.py:Class")
        p.add_argument("--name", default=None, help="the computation name (default: $TOPO_COMPUTATION for run)")
    args = ap.parse_args(argv)

    from .loader import load_computation
    from .metadata import validate_metadata

    name = args.name
    if name is None and args.cmd == "run":
        name = os.environ.get("TOPO_COMPUTATION") or None
    try:
        # stdout carries describe's JSON (and nothing of the computation's): what the module prints while it
        # loads goes to stderr, for both commands (run's stdout is the instance log anyway).
        with contextlib.redirect_stdout(sys.stderr):
            comp = load_computation(args.file, name)
            metadata = validate_metadata(comp.metadata())
    except Exception as err:
        return _fail(str(err))

    if args.cmd == "describe":
        print(json.dumps(metadata))
        return 0

    proto = os.environ.get("TOPO_OPERATOR_PROTOCOL")
    if proto not in (None, "", "1"):
        return _fail(f"run: this SDK speaks operator protocol 1, the worker asks for {proto!r}", 2)
    in_fd = int(os.environ.get("TOPO_OPERATOR_IN", "3"))
    out_fd = int(os.environ.get("TOPO_OPERATOR_OUT", "4"))
    for fd in (in_fd, out_fd):
        try:
            os.set_inheritable(fd, False)  # not handed to the computation's own subprocesses
            os.fstat(fd)
        except OSError as err:
            return _fail(f"run: fd {fd} is not open ({err}); this command is started by a topo worker")
    # Node hands its pipes over as non-blocking sockets (socketpairs); replies are written blocking.
    os.set_blocking(out_fd, True)
    try:
        sys.stdout.reconfigure(line_buffering=True)  # print() lines reach `topo logs` promptly
    except Exception:
        pass
    from .operator import serve
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        code = loop.run_until_complete(serve(comp, in_fd, out_fd, os.environ.get("TOPO_PROGRESS_FILE") or None))
    except KeyboardInterrupt:
        code = 130
    except Exception as err:
        code = _fail(f"run: {type(err).__name__}: {err}")
    # Exit now: after destroy (or end of file) nothing the computation left behind (tasks, non-daemon
    # threads, atexit hooks) may keep the process alive; its cleanup belongs in destroy.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(code)

if __name__ == "__main__":
    sys.exit(main())
