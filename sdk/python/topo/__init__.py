"""topo: the Python SDK of the topo streaming topology runtime.

    from topo import Computation, Metadata, Stream, now_ms
"""
__version__ = "0.1.0"

from .computation import Computation, Context, Instance, KeyedState, Record, now_ms
from .metadata import InvalidMetadataError, Metadata, Stream, validate_metadata

__all__ = ["Computation", "Context", "Instance", "KeyedState", "Record", "now_ms", "Metadata", "Stream",
           "InvalidMetadataError", "validate_metadata", "__version__"]


def __getattr__(name):
    # topo.bridge needs nats-py and is imported only when used.
    if name == "bridge":
        import importlib
        return importlib.import_module(".bridge", __name__)
    raise AttributeError(f"module 'topo' has no attribute {name!r}")
