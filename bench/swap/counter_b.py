"""Swap bench counter in Python, code "b" (counter_lib.py)."""
from counter_lib import BenchCounter


class BenchCounter_b(BenchCounter):
    CODE = "b"
