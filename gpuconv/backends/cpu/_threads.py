"""A small persistent thread pool: NumPy's copies and ufuncs run on one core, so the
NumPy backend splits independent work (planes, tiles) over config.num_threads threads."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from ..._config import config

_executor: ThreadPoolExecutor | None = None
_executor_size = 0


def parallel_ranges(fn, n_items: int) -> None:
    """Call fn(start, stop) over a split of range(n_items) into at most num_threads parts."""
    global _executor, _executor_size
    parts = max(1, min(config.num_threads, n_items))
    if parts == 1:
        fn(0, n_items)
        return
    if _executor is None or _executor_size != config.num_threads:
        if _executor is not None:
            _executor.shutdown(wait=False)
        _executor = ThreadPoolExecutor(max_workers=config.num_threads, thread_name_prefix="gpuconv")
        _executor_size = config.num_threads
    bounds = [n_items * i // parts for i in range(parts + 1)]
    futures = [_executor.submit(fn, bounds[i], bounds[i + 1]) for i in range(parts)]
    for future in futures:
        future.result()
