"""The project's benchmarks: ``python -m bench NAME [--quick]`` (``--list`` lists them).

Each benchmark is a module of this package that registers itself with
:func:`bench.common.benchmark`; :func:`bench.common.discover` imports them all. A run prints
one JSON line and writes it to ``bench/results/NAME.json``.
"""
