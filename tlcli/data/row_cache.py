"""Rows computed once per run and read back every epoch: decoded images, or a frozen part's output.

A `RowCache` holds one row per sample, all of one shape and dtype. It lives in memory when it
fits the memory budget, otherwise in a scratch file read and written by position, so that the
process's memory stays flat however many images there are: the rows read pass through the
kernel's page cache, which the kernel can drop, rather than through the process's own memory, as
the pages of a memory map would. The scratch file is unlinked as soon as it is open: it is
reachable through the open file until the cache is closed, and a killed run leaves nothing behind.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

DEFAULT_MEMORY_GIB = 2.0  # what caches may hold in memory before they spill to a scratch file
DEFAULT_MEMORY_BUDGET = int(DEFAULT_MEMORY_GIB * 2**30)


class RowCache:
    """`count` rows of `row_shape` and `dtype`, written once (`write`) and read by index (`rows`).

    Rows never written (an image that failed to decode) are marked missing in `filled`; readers
    skip them, as the decoding pipeline skips the image.
    """

    def __init__(self, count: int, row_shape: tuple[int, ...], dtype, *, memory_budget: int,
                 scratch_dir: Path | None = None):
        self.row_shape, self.dtype = tuple(int(size) for size in row_shape), np.dtype(dtype)
        self.filled = np.zeros(count, bool)
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.nbytes = count * self.row_bytes
        self.in_memory = self.nbytes <= memory_budget
        self._array, self._file = None, None
        if self.in_memory:
            self._array = np.empty((count, *self.row_shape), self.dtype)
            return
        folder = Path(scratch_dir) if scratch_dir is not None else Path(tempfile.gettempdir())
        folder.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(prefix=".tlcli-cache-", suffix=".rows", dir=folder)
        os.unlink(name)  # the open file keeps the rows; nothing is left behind by a kill
        self._file = handle

    def __len__(self) -> int:
        return len(self.filled)

    def __enter__(self) -> "RowCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def where(self) -> str:
        return "in memory" if self.in_memory else "in a scratch file"

    def write(self, indices, rows) -> None:
        indices, rows = np.asarray(indices), np.ascontiguousarray(rows, self.dtype)
        if self._array is not None:
            self._array[indices] = rows
        else:
            for index, row in zip(indices, rows):
                os.pwrite(self._file, memoryview(row).cast("B"), int(index) * self.row_bytes)
        self.filled[indices] = True

    def rows(self, indices) -> np.ndarray:
        """The rows at `indices` (in that order), as one array."""
        indices = np.asarray(indices)
        if self._array is not None:
            return self._array[indices]
        rows = np.empty((len(indices), *self.row_shape), self.dtype)
        for row, index in zip(rows, indices):
            os.preadv(self._file, [memoryview(row).cast("B")], int(index) * self.row_bytes)
        return rows

    def close(self) -> None:
        """Release the rows (a scratch file's space goes with its last open handle)."""
        self._array = None
        if self._file is not None:
            os.close(self._file)
            self._file = None


def where(caches) -> str:
    """Where some caches hold their rows: "in memory", "in a scratch file", or both."""
    return " and ".join(sorted({cache.where for cache in caches}))
