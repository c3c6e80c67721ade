"""A small persistent thread pool: NumPy's copies and ufuncs run on one core, so the
NumPy backend splits independent work (planes, tiles) over config.num_threads threads.

The calling thread works too, so n threads means n - 1 pool workers. While the workers
run, BLAS is limited to one thread each (they would otherwise oversubscribe the cores);
a call that runs on the caller alone lets BLAS use up to config.num_threads threads.
"""
from __future__ import annotations

import contextlib
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor

from ..._config import config
from . import _blas

_executor: ThreadPoolExecutor | None = None
_executor_size = 0
_executor_lock = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    global _executor, _executor_size
    with _executor_lock:
        if _executor is None or _executor_size < workers:
            if _executor is not None:
                _executor.shutdown(wait=False)
            _executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="gpuconv")
            _executor_size = workers
        return _executor


def thread_count(n_items: int, threads: int | None = None) -> int:
    """Threads that a call over n_items items uses: at most config.num_threads (or `threads`)."""
    return max(1, min(config.num_threads if threads is None else threads, n_items))


def parallel_items(fn, n_items: int, threads: int | None = None, uses_blas: bool = True) -> None:
    """Call fn(i) for every i in range(n_items); each thread takes the next item when it is free.
    uses_blas=False: fn calls no BLAS, so its thread count is left alone.

    Returns once every item is done, without waiting for pool workers that woke up too late
    to find one (on a busy machine that wake-up can cost more than the items)."""
    parts = thread_count(n_items, threads)
    if parts == 1:
        with _blas.limit(config.num_threads) if uses_blas else contextlib.nullcontext():
            for i in range(n_items):
                fn(i)
        return
    counter = itertools.count()  # next() on it is atomic under the GIL
    lock, finished = threading.Lock(), threading.Event()
    state = {"done": 0, "error": None}

    def work():
        for i in iter(counter.__next__, None):
            if i >= n_items or state["error"] is not None:  # after an error, start no more items
                return
            try:
                fn(i)
            except BaseException as exc:  # handed to the caller, which re-raises it
                with lock:
                    state["error"] = state["error"] or exc
                finished.set()
                return
            with lock:
                state["done"] += 1
                if state["done"] == n_items:
                    finished.set()

    with _blas.limit(1) if uses_blas else contextlib.nullcontext():
        pool = _pool(parts - 1)
        for _ in range(parts - 1):
            pool.submit(work)
        work()
        finished.wait()
    if state["error"] is not None:
        raise state["error"]
