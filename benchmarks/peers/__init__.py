"""Benchmark drivers, one module per peer, plus the shared timing helper.

Each driver runs inside its own peer's virtual environment, started by ``benchmarks/run.py``
as ``python -m peers.<peer>_peer bench ...`` with ``benchmarks/`` on ``PYTHONPATH``.
"""
