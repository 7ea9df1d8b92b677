"""ANS coding of integer latents with per-symbol tables, on constriction's stack coder.

The coder is a stack: what is pushed last pops first. `push_latents` and `pop_latents` are
exact mirrors: a group pushed last pops first, bit for bit. Within a group the pop order is:
coarse symbols of every bucket, fine symbols of every bucket, escapes.

Several streams (one per file, when small images are coded together) can share one group's
tables: each owns a range of the flat latents, and codes exactly what it would code alone.
"""

__all__ = ["Encoder", "Decoder", "push_latents", "pop_latents"]

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


def _cuts(index: np.ndarray, spans: list[tuple[int, int]]) -> list[slice]:
    """For each span of positions, the slice of a sorted `index` that falls in it."""
    lo = np.searchsorted(index, [s for s, _ in spans])
    hi = np.searchsorted(index, [e for _, e in spans])
    return [slice(a, b) for a, b in zip(lo.tolist(), hi.tolist())]


def _push_raw(coder, escapes: np.ndarray) -> None:
    u = _zigzag(escapes)
    if (u >= (1 << 32)).any():
        raise OverflowError("latent too far from its mean to code")
    raw = np.stack([(u >> 16).astype(np.int32), (u & 0xFFFF).astype(np.int32)], 1).ravel()
    coder.encode_reverse(raw, _RAW16)


class Encoder:
    """Pushes latent groups; push them in the reverse of the order they are to pop."""

    def __init__(self) -> None:
        self._coder = constriction.stream.stack.AnsCoder()

    def push_latents(self, values: np.ndarray, buckets: list[Bucket]) -> None:
        """Push integer latents (flat int64) with their buckets; escapes carry the value raw."""
        push_latents([self], [(0, len(values))], values, buckets)

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
        try:
            self._coder = constriction.stream.stack.AnsCoder(np.frombuffer(data, "<u4").astype(np.uint32))
        except ValueError as e:  # a stream ending in a zero word
            raise FormatError(f"corrupted payload: {e}") from None

    def pop_latents(self, n: int, buckets: list[Bucket]) -> np.ndarray:
        """Pop n integer latents with the same buckets the encoder used."""
        return pop_latents([self], [(0, n)], buckets)

    def pop_symbols(self, n: int, size: int) -> np.ndarray:
        """Pop n integers pushed by `Encoder.push_symbols` with the same size."""
        return self._coder.decode(constriction.stream.model.Uniform(size), n).astype(np.int64)

    def exhausted(self) -> bool:
        """True when every word of the stream has been read back."""
        return self._coder.is_empty()


def push_latents(
    encoders: list[Encoder], spans: list[tuple[int, int]], values: np.ndarray, buckets: list[Bucket]
) -> None:
    """Push flat latents [start, end) of each span to its encoder, with tables built once for all."""
    coarse, fine, escaped, cuts = [], [], [], []
    for b in buckets:
        v = values[b.index]
        off = v - b.low
        out = (off < 0) | (off > 2 * b.half)
        c = np.where(out, b.escape, off // b.bin)
        coarse.append(c.astype(np.int32))
        rows = np.flatnonzero(~out)
        fine.append((rows, c[rows], (off[rows] % b.bin).astype(np.int32)))
        escaped.append((out, v - (b.low + b.half)))
        cuts.append(_cuts(b.index, spans))
    fine_w = _fine_tables(buckets, [f[0] for f in fine], [f[1] for f in fine])
    coarse_w = coarse_weights_of(buckets)
    fine_cuts = {i: _cuts(fine[i][0], [(s.start, s.stop) for s in cuts[i]]) for i in fine_w}
    for k, enc in enumerate(encoders):
        mine = [cut[k] for cut in cuts]
        esc = [d[s][out[s]] for (out, d), s in zip(escaped, mine)]
        if sum(len(e) for e in esc):
            _push_raw(enc._coder, np.concatenate(esc))
        for i in reversed(range(len(buckets))):
            if i in fine_w:
                r = fine_cuts[i][k]
                if r.stop > r.start:
                    enc._coder.encode_reverse(fine[i][2][r], _CATEGORICAL, fine_w[i][r])
        for i in reversed(range(len(buckets))):
            s = mine[i]
            if s.stop > s.start:
                enc._coder.encode_reverse(coarse[i][s], _CATEGORICAL, coarse_w[i][s])


def pop_latents(decoders: list[Decoder], spans: list[tuple[int, int]], buckets: list[Bucket]) -> np.ndarray:
    """Pop every span's flat latents from its decoder, with the tables the encoders used; all spans' values."""
    values = np.empty(spans[-1][1] if spans else 0, np.int64)
    cuts = [_cuts(b.index, spans) for b in buckets]
    coarse_w = coarse_weights_of(buckets)
    coarse = [np.empty(len(b.index), np.int64) for b in buckets]
    for k, dec in enumerate(decoders):
        for i in range(len(buckets)):
            s = cuts[i][k]
            if s.stop > s.start:
                coarse[i][s] = dec._coder.decode(_CATEGORICAL, coarse_w[i][s])
    outs = [c == b.escape for b, c in zip(buckets, coarse)]
    rows = [np.flatnonzero(~out) for out in outs]
    fine_w = _fine_tables(buckets, rows, [c[r] for c, r in zip(coarse, rows)])
    offs = [c * b.bin for b, c in zip(buckets, coarse)]
    fine_cuts = {i: _cuts(rows[i], [(s.start, s.stop) for s in cuts[i]]) for i in fine_w}
    for k, dec in enumerate(decoders):
        escapes = []
        for i, b in enumerate(buckets):
            s = cuts[i][k]
            if i in fine_w:
                r = fine_cuts[i][k]
                if r.stop > r.start:
                    offs[i][rows[i][r]] += dec._coder.decode(_CATEGORICAL, fine_w[i][r])
            values[b.index[s]] = b.low[s] + offs[i][s]
            out = outs[i][s]
            escapes.append((b.index[s][out], b.low[s][out] + b.half))
        count = sum(len(idx) for idx, _ in escapes)
        if count:
            raw = dec._coder.decode(_RAW16, count * 2).astype(np.uint64).reshape(-1, 2)
            delta = _unzigzag((raw[:, 0] << 16) | raw[:, 1])
            pos = 0
            for idx, centre in escapes:
                values[idx] = centre + delta[pos : pos + len(idx)]
                pos += len(idx)
    return values
