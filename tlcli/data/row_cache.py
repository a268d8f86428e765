"""Rows computed once per run and read back every epoch: decoded images, or a frozen part's output.

A `RowCache` holds one row per sample, all of one shape and dtype. It lives in memory when it
fits the memory budget, otherwise in a memory-mapped scratch file, so that memory stays flat
however many images there are. The scratch file is unlinked as soon as it is mapped: the pages
stay reachable through the mapping until the cache is closed, and a killed run leaves no file
behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

DEFAULT_MEMORY_BUDGET = 2 * 2**30  # bytes a cache may hold in memory before it spills to disk


class RowCache:
    """`count` rows of `row_shape` and `dtype`, written once (`write`) and read by index (`rows`).

    Rows never written (an image that failed to decode) are marked missing in `filled`; readers
    skip them, as the decoding pipeline skips the image.
    """

    def __init__(self, count: int, row_shape: tuple[int, ...], dtype, *, memory_budget: int = DEFAULT_MEMORY_BUDGET,
                 scratch_dir: Path | None = None):
        self.row_shape, self.dtype = tuple(int(size) for size in row_shape), np.dtype(dtype)
        self.filled = np.zeros(count, bool)
        shape = (count, *self.row_shape)
        self.nbytes = int(np.prod(shape, dtype=np.int64)) * self.dtype.itemsize
        self.in_memory = self.nbytes <= memory_budget
        if self.in_memory:
            self.array = np.empty(shape, self.dtype)
            return
        folder = Path(scratch_dir) if scratch_dir is not None else Path(tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".tlcli-cache-", suffix=".npy", dir=folder)
        os.close(handle)
        try:
            self.array = np.lib.format.open_memmap(name, mode="w+", dtype=self.dtype, shape=shape)
        finally:
            os.unlink(name)  # the mapping keeps the pages; nothing is left behind by a kill

    def __len__(self) -> int:
        return len(self.filled)

    def __enter__(self) -> "RowCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def write(self, indices, rows) -> None:
        indices = np.asarray(indices)
        self.array[indices] = rows
        self.filled[indices] = True

    def rows(self, indices) -> np.ndarray:
        """The rows at `indices` (in that order), as one array."""
        return np.asarray(self.array[np.asarray(indices)])

    @property
    def where(self) -> str:
        return "in memory" if self.in_memory else "in a memory-mapped scratch file"

    def close(self) -> None:
        """Release the rows: the scratch file's pages go when the last view of its mapping does."""
        self.array = np.empty((0, *self.row_shape), self.dtype)
        self.filled = np.zeros(0, bool)
