"""Torch's thread count, set before torch is loaded: a process that needs no flow never loads it."""

__all__ = ["set_threads", "apply"]

import sys

_wanted = [0]  # 0: torch's default


def set_threads(n: int) -> None:
    """Run torch with n threads (0 keeps its default): now if torch is loaded, else when `apply` runs."""
    _wanted[0] = n
    if n and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def apply() -> None:
    """Give torch the thread count asked for; the flow's modules call this when they load torch."""
    if _wanted[0]:
        import torch

        torch.set_num_threads(_wanted[0])
