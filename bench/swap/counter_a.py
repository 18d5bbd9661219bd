"""Swap bench counter in Python, code "a" (counter_lib.py)."""
from counter_lib import BenchCounter


class BenchCounter_a(BenchCounter):
    CODE = "a"
