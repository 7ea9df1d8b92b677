"""Compiled loops (numba) cached on disk where a folder can be written, compiled in every
process where none can (a read-only install and no writable home)."""

__all__ = ["compiled", "compiled_integer_sums", "compiled_unchecked_division"]

from collections.abc import Callable

from numba import njit


def compiled(fn: Callable) -> Callable:
    """`fn` compiled (nogil), its machine code cached beside its module or in the user's cache."""
    try:
        return njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba found no folder to cache in
        return njit(nogil=True)(fn)


def compiled_integer_sums(fn: Callable) -> Callable:
    """`compiled` with fastmath, free to reorder and fuse its float sums: only for loops whose
    every sum is of integers under 2**53, which any order gives exactly."""
    try:
        return njit(cache=True, nogil=True, fastmath=True)(fn)
    except RuntimeError:
        return njit(nogil=True, fastmath=True)(fn)


def compiled_unchecked_division(fn: Callable) -> Callable:
    """`compiled` without Python's check on each float division (a division by zero gives IEEE's
    inf or nan, not an exception): only for loops that never divide by zero, which the check
    keeps from running several divisions at once (5 times slower, measured)."""
    try:
        return njit(cache=True, nogil=True, error_model="numpy")(fn)
    except RuntimeError:
        return njit(nogil=True, error_model="numpy")(fn)
