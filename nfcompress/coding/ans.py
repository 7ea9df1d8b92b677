"""ANS coding of integer latents with per-symbol tables, on constriction's stack coder.

The coder is a stack: what is pushed last pops first. `Encoder.push_latents` and
`Decoder.pop_latents` are exact mirrors: a group pushed last pops first, bit for bit. Within a
group the pop order is: coarse symbols of every bucket, fine symbols of every bucket, escapes.
"""

__all__ = ["Encoder", "Decoder"]

import constriction
import numpy as np

from nfcompress.coding.tables import Bucket, coarse_weights_of, fine_weights_of
from nfcompress.errors import FormatError

_CATEGORICAL = constriction.stream.model.Categorical(perfect=False)
_RAW16 = constriction.stream.model.Uniform(1 << 16)


def _zigzag(v: np.ndarray) -> np.ndarray:
    return np.where(v >= 0, 2 * v, -2 * v - 1).astype(np.uint64)


def _unzigzag(u: np.ndarray) -> np.ndarray:
    u = u.astype(np.int64)
    return np.where(u % 2 == 0, u // 2, -(u + 1) // 2)


def _fine_tables(buckets: list[Bucket], rows: list[np.ndarray], coarse: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Fine tables, by bucket index, of the buckets with a second stage and latents in it.

    Every bucket's tables are built together (they share the thread pool), then coded in order.
    """
    two = [i for i, b in enumerate(buckets) if b.bin > 1 and len(rows[i])]
    return dict(zip(two, fine_weights_of([buckets[i] for i in two], [rows[i] for i in two], [coarse[i] for i in two])))


class Encoder:
    """Pushes latent groups; push them in the reverse of the order they are to pop."""

    def __init__(self) -> None:
        self._coder = constriction.stream.stack.AnsCoder()

    def push_latents(self, values: np.ndarray, buckets: list[Bucket]) -> None:
        """Push integer latents (flat int64) with their buckets; escapes carry the value raw."""
        coarse, fine, escaped = [], [], []
        for b in buckets:
            v = values[b.index]
            off = v - b.low
            out = (off < 0) | (off > 2 * b.half)
            c = np.where(out, b.escape, off // b.bin)
            coarse.append(c.astype(np.int32))
            rows = np.flatnonzero(~out)
            fine.append((rows, c[rows], (off[rows] % b.bin).astype(np.int32)))
            escaped.append(v[out] - (b.low[out] + b.half))
        esc = np.concatenate(escaped) if escaped else np.zeros(0, np.int64)
        if len(esc):
            u = _zigzag(esc)
            if (u >= (1 << 32)).any():
                raise OverflowError("latent too far from its mean to code")
            raw = np.stack([(u >> 16).astype(np.int32), (u & 0xFFFF).astype(np.int32)], 1).ravel()
            self._coder.encode_reverse(raw, _RAW16)
        fine_w = _fine_tables(buckets, [f[0] for f in fine], [f[1] for f in fine])
        for i in reversed(range(len(buckets))):
            if i in fine_w:
                self._coder.encode_reverse(fine[i][2], _CATEGORICAL, fine_w[i])
        for c, w in zip(reversed(coarse), reversed(coarse_weights_of(buckets))):
            self._coder.encode_reverse(c, _CATEGORICAL, w)

    def push_symbols(self, values: np.ndarray, size: int) -> None:
        """Push integers in [0, size) with a uniform model: side information such as orientations."""
        self._coder.encode_reverse(np.asarray(values, np.int32), constriction.stream.model.Uniform(size))

    def finish(self) -> bytes:
        """The compressed stream as little-endian bytes."""
        return self._coder.get_compressed().astype("<u4").tobytes()


class Decoder:
    """Pops latent groups from a stream made by `Encoder`."""

    def __init__(self, data: bytes) -> None:
        if len(data) % 4:
            raise FormatError("corrupted payload: ANS stream length is not a multiple of 4")
        self._coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))

    def pop_latents(self, n: int, buckets: list[Bucket]) -> np.ndarray:
        """Pop n integer latents with the same buckets the encoder used."""
        values = np.empty(n, np.int64)
        coarse = [self._coder.decode(_CATEGORICAL, w).astype(np.int64) for w in coarse_weights_of(buckets)]
        outs = [c == b.escape for b, c in zip(buckets, coarse)]
        rows = [np.flatnonzero(~out) for out in outs]
        fine_w = _fine_tables(buckets, rows, [c[r] for c, r in zip(coarse, rows)])
        escapes = []
        for i, (b, c, out) in enumerate(zip(buckets, coarse, outs)):
            off = c * b.bin
            if i in fine_w:
                off[rows[i]] += self._coder.decode(_CATEGORICAL, fine_w[i])
            values[b.index] = b.low + off
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

    def pop_symbols(self, n: int, size: int) -> np.ndarray:
        """Pop n integers pushed by `Encoder.push_symbols` with the same size."""
        return self._coder.decode(constriction.stream.model.Uniform(size), n).astype(np.int64)

    def exhausted(self) -> bool:
        """True when every word of the stream has been read back."""
        return self._coder.is_empty()
