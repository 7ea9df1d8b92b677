"""Threads: torch's count, set before torch is loaded (a process that needs no flow never loads
it), and numpy's matrix products on one thread where the models run them."""

__all__ = ["set_threads", "apply", "one_blas_thread", "share"]

import functools
import os
import sys

_wanted = [0]  # 0: torch's default


def set_threads(n: int) -> None:
    """Run torch and numpy's matrix products with n threads (0 keeps their defaults): torch now if
    it is loaded, else when `apply` runs."""
    _wanted[0] = n
    if n:
        _controller().limit(limits=n, user_api="blas")  # for the rest of the process
    if n and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def share() -> int:
    """The threads a model may spread its own work over: what `set_threads` gave (a worker's
    share of the cores), else every CPU this process may run on."""
    if _wanted[0]:
        return _wanted[0]
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def apply() -> None:
    """Give torch the thread count asked for; the flow's modules call this when they load torch."""
    if _wanted[0]:
        import torch

        torch.set_num_threads(_wanted[0])


@functools.cache
def _controller():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()  # finds the BLAS libraries once: a limit is then 25x cheaper


def one_blas_thread():
    """A context in which numpy's matrix products run on one thread: the integer networks' many
    small products, where threads only wait, and where a folder's workers share the cores."""
    return _controller().limit(limits=1, user_api="blas")
