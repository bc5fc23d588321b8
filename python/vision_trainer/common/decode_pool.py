"""Decoding a batch's images on several threads.

An inference job's loop alternates between decoding and preparing a batch (PIL or OpenCV on one
thread, while the CPUs the forward pass uses sit idle) and the forward pass. JPEG decoding,
resizing and NumPy's array work release the GIL, so a batch's images decode side by side on the
CPU budget's threads: on 2 CPUs a batch of 16 320x240 JPEGs took 0.56-0.74 s instead of
0.93-1.14 s per 640 images (docs/performance.md). The results come back in the batch's order,
and an image that fails raises as it would on one thread.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class DecodePool:
    def __init__(self, threads: int):
        self.threads = max(1, int(threads))
        self._pool = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="vt-decode") if self.threads > 1 else None

    def map(self, fn: Callable[[Any], Any], items: Iterable[Any]) -> list:
        items = list(items)
        if self._pool is None or len(items) < 2:
            return [fn(item) for item in items]
        return list(self._pool.map(fn, items))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)


SEQUENTIAL = DecodePool(1)
