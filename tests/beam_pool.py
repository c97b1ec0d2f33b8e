"""A Beam worker pool for tests: real SDK worker processes that share nothing with the test process.

The pool itself is ``benchmarks.worker_pool`` (shared with the benchmark's ``--worker-pool``):
Beam's ``worker_pool_main`` serving the EXTERNAL environment, in its own process group. Use it
through the module-scoped fixture (one pool per test module, started on a port the OS picks,
stopped by its process group's id at teardown)::

    from beam_pool import beam_pool_fixture  # noqa: F401 (the fixture ``beam_pool``)

    def test_x(beam_pool):
        run(beam_args=beam_pool.beam_args(workers=2))

Cost: ~1.5 s per pipeline, plus each worker's own import of TFDV/TFT.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from benchmarks.worker_pool import MULTI_PROCESSING_ARGS, WorkerPool, start_pool, stop_pool

__all__ = ["MULTI_PROCESSING_ARGS", "WorkerPool", "beam_pool_fixture"]


@pytest.fixture(scope="module", name="beam_pool")
def beam_pool_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerPool]:
    """One Beam worker pool for a test module."""
    pool = start_pool(tmp_path_factory.mktemp("beam_pool") / "pool.log")
    try:
        yield pool
    finally:
        stop_pool(pool)
