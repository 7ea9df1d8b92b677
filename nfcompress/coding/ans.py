"""ANS coding of integer latents with per-symbol tables, on constriction's stack coder.

The coder is a stack: what is pushed last pops first. `push_latents` and `pop_latents` are
exact mirrors: pop(push(stream, x)) gives x back and leaves the stream as it was.
"""

__all__ = ["Encoder", "Decoder"]

import constriction
import numpy as np

from nfcompress.coding.tables import Bucket
from nfcompress.errors import FormatError

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_RAW16 = constriction.stream.model.Uniform(1 << 16)


def _zigzag(v: np.ndarray) -> np.ndarray:
    return np.where(v >= 0, 2 * v, -2 * v - 1).astype(np.uint64)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    u = u.astype(np.int64)
    return np.where(u % 2 == 0, u // 2, -(u + 1) // 2)


class Encoder:
    """Pushes latent groups; call `push_latents` in the reverse of the order they will pop."""

    def __init__(self) -> None:
        self._coder = constriction.stream.stack.AnsCoder()

    def push_latents(self, values: np.ndarray, buckets: list[Bucket]) -> None:
        """Push integer latents (flat int64) with their tables; escapes carry the value raw."""
        escaped_all = []
        symbols_per_bucket = []
        for b in buckets:
            s = values[b.index] - b.low
            out = (s < 0) | (s > 2 * b.half)
            s = np.where(out, b.escape, s)
            symbols_per_bucket.append(s.astype(np.int32))
            escaped_all.append(values[b.index][out] - (b.low[out] + b.half))
        esc = np.concatenate(escaped_all) if escaped_all else np.zeros(0, np.int64)
        if len(esc):
            u = _zigzag(esc)
            if (u >= (1 << 32)).any():
                raise OverflowError("latent too far from its mean to code")
            raw = np.stack([(u >> 16).astype(np.int32), (u & 0xFFFF).astype(np.int32)], 1).ravel()
            self._coder.encode_reverse(raw, _RAW16)
        for b, s in zip(reversed(buckets), reversed(symbols_per_bucket)):
            self._coder.encode_reverse(s, _CATEGORICAL, b.weights)

    def finish(self) -> bytes:
        """The compressed stream as little-endian bytes."""
        return self._coder.get_compressed().astype("<u4").tobytes()


class Decoder:
    """Pops latent groups from a stream made by `Encoder`, in the order they were pushed last."""

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise FormatError("corrupted payload: ANS stream length is not a multiple of 4")
        self._coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))

    def pop_latents(self, n: int, buckets: list[Bucket]) -> np.ndarray:
        """Pop n integer latents with the same tables the encoder used."""
        values = np.empty(n, np.int64)
        escapes = []
        for b in buckets:
            s = self._coder.decode(_CATEGORICAL, b.weights).astype(np.int64)
            values[b.index] = b.low + s
            out = s == b.escape
            escapes.append((b.index[out], b.low[out] + b.half))
        count = sum(len(i) for i, _ in escapes)
        if count:
            raw = self._coder.decode(_RAW16, count * 2).astype(np.uint64).reshape(-1, 2)
            delta = _unzigzag((raw[:, 0] << 16) | raw[:, 1])
            pos = 0
            for idx, centre in escapes:
                values[idx] = centre + delta[pos : pos + len(idx)]
                pos += len(idx)
        return values

    def exhausted(self) -> bool:
        """True when every word of the stream has been read back."""
        return self._coder.is_empty()
