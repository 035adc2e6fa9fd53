"""Benchmarks of eventpatterns: the core in one process, and workers end to end.

`python -m benchmarks.bench_core` measures the pure core; `python -m benchmarks.run`
measures everything (core, one worker end to end, the baselines, memory, recovery).
See benchmarks/README.md.
"""
