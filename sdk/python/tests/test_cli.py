"""`python -m topo describe` (what `topo deploy file.py` runs) and its errors."""
import json
import os
import subprocess
import sys

import pytest

from conftest import SDK

EXAMPLES = os.path.normpath(os.path.join(SDK, "..", "..", "examples", "tweets"))


def describe(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=SDK)
    env.pop("TOPO_COMPUTATION", None)
    p = subprocess.run([sys.executable, "-m", "topo", "describe", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=30)
    return p.returncode, p.stdout, p.stderr


TWO = '''
from topo import Computation, Metadata, Stream
class A(Computation):
    def metadata(self): return Metadata(name="alpha", istreams=[Stream("x", grouping="key")], ostreams=["y"], hints={"fuse": False})
    def process_record(self, ctx, r): pass
class B(Computation):
    def metadata(self): return Metadata(name="beta", istreams=["x"], ostreams=[])
    def process_record(self, ctx, r): pass
'''


def test_describe_prints_normalized_metadata(write_comp):
    code, out, err = describe(os.path.join(EXAMPLES, "generator.py"))
    assert code == 0, err
    assert out.count("\n") == 1
    assert json.loads(out) == {"name": "mock-tweets-generator", "istreams": [], "ostreams": ["tweets"],
                                "delivery": {"tweets": "at-least-once"}}
    path = write_comp(TWO)
    code, out, _ = describe(path + ":A")
    assert code == 0 and json.loads(out) == {"name": "alpha", "istreams": [{"stream": "x", "grouping": "key"}],
                                             "ostreams": ["y"], "hints": {"fuse": False}}
    code, out, _ = describe(path, "--name", "beta")
    assert code == 0 and json.loads(out)["name"] == "beta"


def test_describe_sees_sibling_modules(write_comp, tmp_path):
    (tmp_path / "helper.py").write_text("OUT = 'from-helper'\n")
    path = write_comp('''
from helper import OUT
from topo import Computation, Metadata
class C(Computation):
    def metadata(self): return Metadata(name="c", istreams=[], ostreams=[OUT])
''')
    code, out, err = describe(path, cwd="/")
    assert code == 0, err
    assert json.loads(out)["ostreams"] == ["from-helper"]


def test_a_base_class_and_one_subclass_is_not_ambiguous(write_comp):
    path = write_comp('''
from topo import Computation, Metadata
class Base(Computation):
    def process_record(self, ctx, r): pass
class Real(Base):
    def metadata(self): return Metadata(name="real", istreams=["a"], ostreams=[])
''')
    code, out, err = describe(path)
    assert code == 0, err
    assert json.loads(out)["name"] == "real"


@pytest.mark.parametrize("source,target_suffix,args,message", [
    ("x = 1\n", "", [], "defines no topo.Computation subclass"),
    (TWO, "", [], "several computations"),
    (TWO, "", ["--name", "gamma"], 'no computation named "gamma"'),
    (TWO, ":C", [], "has no C"),
    ("import nothing_here_at_all\n", "", [], "ModuleNotFoundError"),
    ('''
from topo import Computation, Metadata
class Bad(Computation):
    def metadata(self): return Metadata(name="x", istreams=[{"stream": "a", "grouping": "fanout"}], ostreams=[])
''', "", [], "istreams[0].grouping"),
    ('''
from topo import Computation, Metadata
class NoProcess(Computation):
    def metadata(self): return Metadata(name="np", istreams=["a"], ostreams=[])
''', "", [], "defines no process_record"),
    ('''
from topo import Computation
class Dict(Computation):
    def metadata(self): return {"name": "d", "istreams": ["a b"], "ostreams": []}
    def process_record(self, ctx, r): pass
''', "", [], "istreams[0]"),
])
def test_describe_errors(write_comp, source, target_suffix, args, message):
    path = write_comp(source)
    code, out, err = describe(path + target_suffix, *args)
    assert code == 1 and out == ""
    assert message in err
    assert err.count("\n") == 1 and err.startswith("topo: ")


def test_describe_missing_file():
    code, out, err = describe("/nonexistent/file.py")
    assert code == 1 and "no such file" in err


def test_metadata_may_be_a_dict(write_comp):
    path = write_comp('''
from topo import Computation
class Dict(Computation):
    def metadata(self): return {"name": "d", "istreams": [("a", "key")], "ostreams": [], "extra": 1}
    def process_record(self, ctx, r): pass
''')
    code, out, _ = describe(path)
    assert code == 0 and json.loads(out) == {"name": "d", "istreams": [{"stream": "a", "grouping": "key"}], "ostreams": []}


def test_what_the_module_prints_does_not_spoil_the_json(write_comp):
    path = write_comp('''
print("loading the model...")
from topo import Computation, Metadata
class C(Computation):
    def metadata(self):
        print("metadata asked")
        return Metadata(name="chatty", istreams=[], ostreams=[])
''')
    code, out, err = describe(path)
    assert code == 0 and json.loads(out) == {"name": "chatty", "istreams": [], "ostreams": []}
    assert "loading the model..." in err and "metadata asked" in err
