"""The compiled ANS coder: constriction's streams, both ways, and streams on top of streams."""

import constriction
import numpy as np
import pytest

from nfcompress.coders.screen import kernels
from nfcompress.coding import rans


def _random_symbols(r: np.random.Generator, n: int, a: int) -> tuple[np.ndarray, np.ndarray]:
    """n symbols of a alphabet, each with integer weights of its own (`kernels._normalise`)."""
    counts = r.integers(0, 1000, (n, a)) * (r.random((n, a)) < 0.6)
    counts[np.arange(n), r.integers(0, a, n)] += r.integers(1, 10**6, n)
    w = np.empty((n, a), np.int64)
    for row, out in zip(counts.astype(np.int64), w):
        kernels._normalise(row, out)
    return np.array([r.choice(np.flatnonzero(c)) for c in counts], np.int32), w


def _record(symbols: np.ndarray, w: np.ndarray) -> tuple:
    io, cum = rans.sink(len(symbols)), np.empty(w.shape[1] + 1, np.int64)
    for s, row in zip(symbols, w):
        rans.cumulative(row, cum)
        rans.code(io, cum, w.shape[1], s)
    return io


@pytest.mark.parametrize("seed", range(3))
def test_the_compiled_coder_writes_and_reads_constrictions_streams(seed):
    r = np.random.default_rng(seed)
    for _ in range(40):
        n, a = int(r.integers(1, 300)), int(r.integers(2, 300))
        symbols, w = _random_symbols(r, n, a)
        reference = constriction.stream.stack.AnsCoder()
        reference.encode_reverse(symbols, constriction.stream.model.Categorical(perfect=False), w.astype(np.float64))
        words = rans.finish(_record(symbols, w), rans.NOTHING)
        assert np.array_equal(words, reference.get_compressed())
        io, back, cum = rans.source(words), [], np.empty(a + 1, np.int64)
        for row in w:
            rans.cumulative(row, cum)
            back.append(rans.code(io, cum, a, 0))
        assert back == symbols.tolist() and rans.exhausted(io)


def test_a_stream_on_top_of_another_is_one_stream_of_both_as_constriction_goes_on():
    r = np.random.default_rng(7)
    categorical = constriction.stream.model.Categorical(perfect=False)
    for _ in range(30):
        a = int(r.integers(2, 260))
        first, w1 = _random_symbols(r, int(r.integers(0, 200)), a)
        then, w2 = _random_symbols(r, int(r.integers(0, 200)), a)
        below = rans.finish(_record(first, w1), rans.NOTHING)
        on_top = rans.finish(_record(then, w2), below)  # `then` decodes first
        both = rans.finish(_record(np.concatenate([then, first]), np.concatenate([w2, w1])), rans.NOTHING)
        assert np.array_equal(on_top, both)
        reference = constriction.stream.stack.AnsCoder(below) if len(below) else constriction.stream.stack.AnsCoder()
        if len(then):
            reference.encode_reverse(then, categorical, w2.astype(np.float64))
        assert np.array_equal(on_top, reference.get_compressed())


def test_following_a_stream_by_its_recorded_intervals_is_decoding_it():
    r = np.random.default_rng(11)
    for _ in range(30):
        a = int(r.integers(2, 260))
        symbols, w = _random_symbols(r, int(r.integers(1, 300)), a)
        io = _record(symbols, w)
        n = len(symbols)
        starts, freqs = io[1][:n].astype(np.int32), io[2][:n].astype(np.int32)
        words = rans.finish(io, rans.NOTHING)
        followed = rans.source(words)
        assert rans.follow(followed, starts, freqs) and rans.exhausted(followed)
        # Another symbol's interval (every symbol has one: its weight plus 1) at one place is
        # not followed: the decoder would read another symbol there.
        k = int(r.integers(0, n))
        other = (symbols[k] + 1) % a
        cum = np.empty(a + 1, np.int64)
        rans.cumulative(w[k], cum)
        wrong_starts, wrong_freqs = starts.copy(), freqs.copy()
        wrong_starts[k], wrong_freqs[k] = cum[other], cum[other + 1] - cum[other]
        assert not rans.follow(rans.source(words), wrong_starts, wrong_freqs)
