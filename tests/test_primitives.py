"""The exact primitives the payloads share: each is exact, and each bijection inverts."""

import functools
import hashlib

import constriction
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nfcompress.coding.primitives import (
    FLOOR,
    FRAC_BITS,
    PRECISION,
    LogisticTables,
    bit_lengths,
    det_exp,
    diagonals,
    exp_one,
    int_bits,
    logistic_cumulative,
    logistic_scale,
    ordered_sum,
    pop_ints,
    push_ints,
    unzigzag,
    wavefronts,
    zigzag,
)

_RAW16 = constriction.stream.model.Uniform(1 << 16)


def test_det_exp_is_exp_and_saturates_above_subnormals():
    x = np.concatenate([np.linspace(-300, 300, 100001), [0.0, 1.0, -1.0]])
    assert np.allclose(det_exp(x), np.exp(x), rtol=1e-9, atol=0)
    assert det_exp(np.array([0.0]))[0] == 1.0
    assert list(det_exp(np.array([-1e6, -400.0, 400.0, 1e6]))) == list(np.ldexp(1.0, [-450, -450, 450, 450]))


def test_det_exp_gives_the_same_bits_on_every_machine():
    # The digest of det_exp on a grid, as the machine that wrote this test computed it; portable
    # files depend on every machine computing these very bits (numpy's exp would not).
    digest = hashlib.sha256(det_exp(np.linspace(-400, 400, 200001)).tobytes()).hexdigest()
    assert digest == "b5eff34509589593a7788e5e0c0d0961a85ef3ecdc028e6ae91c57bc5fe3100b"


def test_exp_one_is_det_exp_bit_for_bit():
    x = np.concatenate([np.linspace(-400, 400, 20001), [-1e6, 1e6, 0.0]])
    assert np.array_equal(np.array([exp_one(v) for v in x]), det_exp(x))


@pytest.mark.parametrize("q", [0, 1, 77, 128, 254, 255])
def test_the_compiled_cumulative_tables_are_numpys(q):
    # The numpy form of a scale code's table, which the compiled one must equal bit for bit.
    edges = np.arange(512, dtype=np.float64) - 255.5
    frac = np.arange(16, dtype=np.float64) / 16
    total = (1 << PRECISION) - 256 * (1 + FLOOR)
    cdf = 1.0 / (1.0 + det_exp(-(edges[None, :] - frac[:, None]) / logistic_scale(np.array([q]))[0]))
    assert np.array_equal(logistic_cumulative(q), np.maximum.accumulate(np.floor(cdf * total), axis=1))


def test_ordered_sum_adds_each_row_from_left_to_right():
    a = np.random.default_rng(3).normal(size=(50, 16)) * 1e3
    left_to_right = [functools.reduce(lambda s, v: s + v, row.tolist()) for row in a]
    assert ordered_sum(a).tolist() == left_to_right


def _logistic_rows() -> np.ndarray:
    tables = LogisticTables(np.arange(256))
    p = np.arange(0, 256 << FRAC_BITS, 331, dtype=np.int64)
    return np.concatenate([tables.rows(p, np.full(len(p), q)) for q in range(0, 256, 5)])


def test_every_logistic_row_has_its_floor_and_sums_to_the_precision():
    rows = _logistic_rows()
    assert (rows >= FLOOR).all()
    assert (rows.sum(1) == (1 << PRECISION) - 256).all()
    assert (rows == np.floor(rows)).all()


def test_logistic_tables_give_the_same_integers_on_every_machine():
    # As the machine that wrote this test computed them: the linear, JPEG-history and causal
    # payloads decode only where these integers are the same.
    digest = hashlib.sha256(_logistic_rows().astype(np.int64).tobytes()).hexdigest()
    assert digest == "41955fbe6515c4efa219d377d2b53eb03cbc21d936605e97ae1836e620db9504"


def test_a_logistic_row_peaks_at_its_prediction_and_narrows_with_its_scale():
    tables = LogisticTables(np.array([0, 64]))
    p = np.array([(100 << FRAC_BITS) + (1 << (FRAC_BITS - 1)) - 1], np.int64)  # just under 100.5
    narrow, wide = tables.rows(p, np.array([0]))[0], tables.rows(p, np.array([1]))[0]
    assert np.argmax(narrow) == np.argmax(wide) == 100
    assert narrow[100] > wide[100] and logistic_scale(np.array([0]))[0] < logistic_scale(np.array([64]))[0]


@pytest.mark.parametrize("slope", [2, 3])
@pytest.mark.parametrize("h, w", [(1, 1), (1, 9), (9, 1), (5, 7), (16, 3)])
def test_wavefronts_visit_every_pixel_once_after_the_neighbours_it_reads(h, w, slope):
    seen = np.full((h, w), -1)
    for t, (i, j) in enumerate(wavefronts(h, w, slope)):
        assert (seen[i, j] == -1).all() and (slope * i + j == t).all()
        seen[i, j] = t
    assert (seen >= 0).all()
    # West, north-west, north and north-east neighbours all lie on earlier wavefronts; at slope 3
    # also the cell right of north-east.
    for dy, dx in ((0, -1), (-1, -1), (-1, 0), (-1, 1), *([(-1, 2)] if slope == 3 else [])):
        a, b = (
            seen[max(0, -dy) :, max(0, -dx) : w - max(0, dx)],
            seen[: h + min(0, dy) if dy else h, max(0, dx) :][:, : w - max(0, -dx) - max(0, dx)],
        )
        assert a.shape == b.shape and (b < a).all()


@pytest.mark.parametrize("rows, cols", [(1, 1), (3, 8), (8, 3), (4, 4)])
def test_diagonals_visit_every_block_once_after_its_west_and_north(rows, cols):
    seen = np.full((rows, cols), -1)
    for t, (i, j) in enumerate(diagonals(rows, cols)):
        assert (seen[i, j] == -1).all() and (i + j == t).all()
        seen[i, j] = t
    assert (seen >= 0).all()
    assert (seen[1:, :] > seen[:-1, :]).all() and (seen[:, 1:] > seen[:, :-1]).all()


@given(st.lists(st.integers(-(2**40), 2**40), max_size=50))
def test_zigzag_is_a_bijection_onto_the_non_negative_integers(values):
    v = np.array(values, np.int64)
    u = zigzag(v)
    assert (u >= 0).all() and np.array_equal(unzigzag(u), v)
    assert zigzag(np.array([0, -1, 1, -2, 2])).tolist() == [0, 1, 2, 3, 4]


def test_bit_lengths_are_exact_up_to_2_to_the_52():
    u = np.array([0, 1, 2, 3, 4, 255, 256, (1 << 32) - 1, 1 << 32, (1 << 52) - 1], np.int64)
    assert bit_lengths(u).tolist() == [int(x).bit_length() for x in u.tolist()]


@pytest.mark.parametrize(
    "values", [[0], [0, 1, 2, 3], [5] * 40, [1 << 16, (1 << 17) + 3, (1 << 32) - 1, 0, 7, 1 << 31]]
)
def test_side_integers_of_any_size_come_back_and_cost_what_int_bits_says(values):
    u = np.array(values, np.int64)
    coder = constriction.stream.stack.AnsCoder()
    below = np.arange(100, dtype=np.int32)
    coder.encode_reverse(below, _RAW16)  # a stream that is already long, as the pixels make it
    before = coder.num_bits()
    push_ints(coder, u)
    assert abs(coder.num_bits() - before - int_bits(u)[1]) <= 32
    assert np.array_equal(pop_ints(coder, len(u)), u)
    assert np.array_equal(coder.decode(_RAW16, 100), below) and coder.is_empty()
