"""An ANS coder in compiled code (numba) whose streams are constriction's: models code with it
inside their compiled loops (the screen model a whole segment at a time, the linear model's
encoder its pixels), and every payload's bytes stay what constriction's AnsCoder wrote (tests
check the two agree on random streams; constriction goes on from where it stopped, and back).

The coder is range ANS with a 64-bit state, 32-bit words and probabilities of PRECISION bits.
A distribution is a cumulative table `cum` of A + 1 entries: symbol s takes cum[s + 1] - cum[s]
of 2^PRECISION (`cumulative`: an integer weight plus 1, as constriction's Categorical codes the
weights that sum to 2^PRECISION - A). `Io` is a tuple of arrays, so that one compiled model codes
either way: meta (encoding 1 or 0, symbols recorded, words left to read), the starts and
frequencies recorded (encoding), the words and the state (decoding).
"""

__all__ = ["NOTHING", "cumulative", "code", "follow", "sink", "source", "finish", "exhausted"]

import numpy as np

from nfcompress.coding.primitives import PRECISION
from nfcompress.compiled import compiled

_LOW = np.uint64(0xFFFFFFFF)
_WORD = np.uint64(32)
_SPAN = np.uint64(1 << 32)
_BITS = np.uint64(PRECISION)
_FLUSH = np.uint64(64 - PRECISION)
_MASK = np.uint64((1 << PRECISION) - 1)
NOTHING = np.zeros(0, np.uint32)  # the words of an empty stream (`finish` on no stream)


def sink(capacity: int) -> tuple:
    """An encoding Io that records up to `capacity` symbols."""
    return (
        np.array([1, 0, 0], np.int64),
        np.empty(capacity, np.int64),
        np.empty(capacity, np.int64),
        np.zeros(0, np.uint32),
        np.zeros(1, np.uint64),
    )


def source(words: np.ndarray) -> tuple:
    """A decoding Io over a stream's words (the state is its last one or two)."""
    words = np.ascontiguousarray(words, np.uint32)
    pos, state = len(words), 0
    while pos > 0 and state < 1 << 32:
        pos -= 1
        state = (state << 32) | int(words[pos])
    empty = np.zeros(0, np.int64)
    return np.array([0, 0, pos], np.int64), empty, empty, words, np.array([state], np.uint64)


def exhausted(io: tuple) -> bool:
    """Whether a decoding Io has read every word and is back at the encoder's first state."""
    return int(io[0][2]) == 0 and int(io[4][0]) == 0


@compiled
def cumulative(weights: np.ndarray, cum: np.ndarray) -> None:
    """The cumulative table (A + 1) of integer weights (A), each taken plus 1; the weights may be
    cum[1:] itself (each is read before its cell is written)."""
    cum[0] = 0
    for j in range(weights.size):
        cum[j + 1] = cum[j] + weights[j] + 1


@compiled
def code(io: tuple, cum: np.ndarray, a: int, s: int) -> int:
    """Record symbol s of the distribution `cum` (of a symbols) or decode one; the symbol."""
    meta, starts, freqs, words, state = io
    if meta[0]:
        k = meta[1]
        starts[k] = cum[s]
        freqs[k] = cum[s + 1] - cum[s]
        meta[1] = k + 1
        return s
    st = state[0]
    q = np.int64(st & _MASK)
    lo, hi = 0, a  # cum[lo] <= q < cum[hi]
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if cum[mid] <= q:
            lo = mid
        else:
            hi = mid
    st = np.uint64(cum[lo + 1] - cum[lo]) * (st >> _BITS) + np.uint64(q - cum[lo])
    if st < _SPAN and meta[2] > 0:
        meta[2] -= 1
        st = (st << _WORD) | np.uint64(words[meta[2]])
    state[0] = st
    return lo


@compiled
def follow(io: tuple, starts: np.ndarray, freqs: np.ndarray) -> bool:
    """Whether a decoding Io's next symbols decode as those an encoding recorded with these starts
    and frequencies (cum[s] and cum[s + 1] - cum[s] of each): each one's quantile falls in its
    interval, so a decoder with the encoder's tables decodes the same symbols. It reads past
    them, as `code` would, up to the first that does not."""
    meta, words, state = io[0], io[3], io[4]
    st = state[0]
    for k in range(starts.size):
        q = np.int64(st & _MASK)
        if q < starts[k] or q >= starts[k] + freqs[k]:
            state[0] = st
            return False
        st = np.uint64(freqs[k]) * (st >> _BITS) + np.uint64(q - starts[k])
        if st < _SPAN and meta[2] > 0:
            meta[2] -= 1
            st = (st << _WORD) | np.uint64(words[meta[2]])
    state[0] = st
    return True


@compiled
def finish(io: tuple, below: np.ndarray) -> np.ndarray:
    """The words of the symbols an encoding Io recorded, each coded in reverse (so that decoding
    reads them in order), the state last: on top of the stream `below` (its words; none for a
    stream of its own), whose symbols then decode after these, as constriction's AnsCoder(below)
    would go on."""
    meta, starts, freqs = io[0], io[1], io[2]
    n = meta[1]
    pos, st = below.size, np.uint64(0)
    while pos > 0 and st < _SPAN:
        pos -= 1
        st = (st << _WORD) | np.uint64(below[pos])
    out = np.empty(pos + n + 2, np.uint32)
    for k in range(pos):
        out[k] = below[k]
    k = pos
    for j in range(n - 1, -1, -1):
        f = np.uint64(freqs[j])
        if (st >> _FLUSH) >= f:
            out[k] = np.uint32(st & _LOW)
            k += 1
            st >>= _WORD
        st = ((st // f) << _BITS) | (st % f + np.uint64(starts[j]))
    while st:
        out[k] = np.uint32(st & _LOW)
        k += 1
        st >>= _WORD
    return out[:k]
