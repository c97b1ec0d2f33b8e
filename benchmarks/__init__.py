"""Benchmark tooling: KubeTFX against TFX 1.16 on the reference workload.

Not part of the product: the wheel (and so the runtime image) holds ``components`` and
``pipelines`` only, and neither imports from here. Run from the repository root::

    python -m benchmarks.benchmark --help
"""
