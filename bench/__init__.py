"""partner-stream benchmark suite (issue 6): ``python -m bench run [scenario ...] [--quick] [--reps N]``.

Not part of the test command: ``tests/test_bench_smoke.py`` only runs it with tiny sizes.
See docs/benchmarks.md for the protocol, the scenarios and the latest results.
"""
