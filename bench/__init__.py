"""Benchmarks: `make bench` (python -m bench [name ...]) runs bench/bench_<name>.py modules.

Each module has `run() -> dict[str, float | int | str]`; results merge into bench/results.json under the
module's name, and a table is printed. Benchmarks measure against a baseline taken in the same run,
because these machines are shared and noisy.
"""
