"""Finding the computation in a user's file (``file.py[:Class]``)."""
from __future__ import annotations

import importlib.util
import os
import re
import sys
from typing import Any, Optional

from .computation import Computation, load_error
from .metadata import validate_metadata

__all__ = ["LoadError", "load_computation", "split_target"]


class LoadError(Exception):
    """The file has no computation, or several and no way to choose (code MODULE_LOAD_FAILED)."""

    code = "MODULE_LOAD_FAILED"


def split_target(target: str) -> tuple:
    """``path/to/file.py:Class`` -> (path, "Class"); a bare path -> (path, None)."""
    m = re.fullmatch(r"(.+\.py):([A-Za-z_][A-Za-z0-9_]*)", target)
    if m:
        return m.group(1), m.group(2)
    return target, None


def _load_module(path: str):
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        raise LoadError(f"{path}: no such file")
    folder = os.path.dirname(path)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    stem = os.path.splitext(os.path.basename(path))[0]
    modname = stem if stem.isidentifier() and stem not in sys.modules else f"topo_computation_{abs(hash(path))}"
    spec = importlib.util.spec_from_file_location(modname, path)
    if spec is None or spec.loader is None:
        raise LoadError(f"{path}: cannot be loaded as a Python module")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[modname] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException as err:
        sys.modules.pop(modname, None)
        if isinstance(err, (KeyboardInterrupt,)):
            raise
        raise LoadError(f"{path}: loading failed: {type(err).__name__}: {err}") from err
    return mod


def _instantiate(obj: Any, where: str) -> Computation:
    if isinstance(obj, Computation):
        return obj
    if isinstance(obj, type) and issubclass(obj, Computation):
        try:
            return obj()
        except Exception as err:
            raise LoadError(f"{where}: {obj.__name__}() failed: {type(err).__name__}: {err}") from err
    raise LoadError(f"{where}: {obj!r} is not a topo.Computation subclass")


def _name_of(comp: Computation) -> Optional[str]:
    try:
        md = validate_metadata(comp.metadata())
        return md["name"]
    except Exception:
        return None


def load_computation(target: str, name: Optional[str] = None) -> Computation:
    """Loads ``file.py[:Class]`` and returns an instance of its computation, checked (metadata valid,
    process_record present when it reads streams). With ``:Class`` that class; else the one whose
    metadata name is ``name``; else the only Computation subclass defined in the file."""
    path, cls = split_target(target)
    mod = _load_module(path)
    where = os.path.basename(path)
    if cls is not None:
        if not hasattr(mod, cls):
            raise LoadError(f"{where} has no {cls}")
        comp = _instantiate(getattr(mod, cls), where)
    else:
        classes = [v for v in vars(mod).values()
                   if isinstance(v, type) and issubclass(v, Computation) and v is not Computation
                   and v.__module__ == mod.__name__]
        if not classes:
            raise LoadError(f"{where} defines no topo.Computation subclass")
        if name is not None:
            comps = [_instantiate(c, where) for c in classes]
            matching = [c for c in comps if _name_of(c) == name]
            if len(matching) == 1:
                comp = matching[0]
            elif not matching:
                names = ", ".join(f"{type(c).__name__} ({_name_of(c) or 'invalid metadata'})" for c in comps)
                raise LoadError(f'{where} has no computation named "{name}" (found: {names})')
            else:
                raise LoadError(f'{where} has several computations named "{name}": '
                                f'{", ".join(type(c).__name__ for c in matching)}; name one with {where}:Class')
        elif len(classes) == 1:
            comp = _instantiate(classes[0], where)
        else:
            # Several classes: an abstract base plus one concrete subclass is common; keep the leaves.
            leaves = [c for c in classes if not any(o is not c and issubclass(o, c) for o in classes)]
            if len(leaves) != 1:
                raise LoadError(f"{where} defines several computations ({', '.join(c.__name__ for c in classes)}): "
                                f"name one with {where}:Class or --name")
            comp = _instantiate(leaves[0], where)
    why = load_error(comp)  # raises InvalidMetadataError for bad metadata
    if why:
        raise LoadError(why)
    return comp
