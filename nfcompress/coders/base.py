"""The interface every model implements: what it codes, its payload, and the way back."""

__all__ = ["Coder", "Payload", "undecodable"]

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from nfcompress.container import Header

Progress = Callable[[int, int], None] | None


@dataclass
class Payload:
    """A model's coded colour planes: the chunks the container stores, and what they cost."""

    kind: str  # the container's payload kind (container.KINDS), which names the model
    chunks: list[bytes]
    ideal_bits: float  # -log2 P of the colour planes, side information included
    pixel_bits: np.ndarray | None = None  # each pixel's share of them (H, W), where the model gives one
    fields: dict = field(default_factory=dict)  # header fields of the payload's own (the flow's model and tiles)
    # `decode` of this payload as its encoder can do it faster, for the encoder's check (None: `decode`)
    replay: Callable[[Header, list[bytes]], np.ndarray] | None = field(default=None, repr=False)


@runtime_checkable
class Coder(Protocol):
    """A model that codes an image's colour planes, (H, W, 1) grey or (H, W, 3) RGB, uint8.

    Alpha, the checksum and the header are the codec's; a coder owns its payload's bytes, its
    section of docs/format.md, and its decoder for every version of them.
    """

    kind: str

    def accepts(self, height: int, width: int, channels: int) -> bool:
        """Whether it codes colour planes of this shape (cheap: no pixel is read)."""
        ...

    def encode(self, colour: np.ndarray, progress: Progress = None) -> Payload:
        """The payload of colour planes it accepts."""
        ...

    def decode(self, header: Header, chunks: list[bytes], progress: Progress = None) -> np.ndarray:
        """The colour planes of a payload of its kind; ValueError, RuntimeError, OverflowError,
        IndexError or NfcError where the payload is damaged."""
        ...


# A coder whose small images decode faster together may also have
#     decode_many(self, payloads: list[tuple[Header, list[bytes]]]) -> list[np.ndarray | NfcError]
# (`decode` of each, an error in its place where one fails): the codec hands it its payloads at once.


def undecodable(what: str, portable: bool) -> str:
    """The message for a payload that fails to decode behind a valid header, naming its causes."""
    if portable:
        return f"{what}: the file is damaged (a portable file decodes alike on every machine)"
    return (
        f"{what}: the file is damaged, or it was coded on a machine whose floating-point arithmetic "
        "differs from this one's (another kind of CPU or GPU); decode it where it was coded"
    )
