"""The linear model's local predictor: the decoder's sums are the encoder's, and its predictions
are exact integers that do not depend on how many are made at once."""

import numpy as np
import pytest

from nfcompress.coders.linear import local
from nfcompress.coders.linear import model as linear
from nfcompress.coding.primitives import wavefronts


def _wavefronts(h: int, w: int, slope: int = 2):
    return list(wavefronts(h, w, slope))


def _terms(tex: np.ndarray, y: np.ndarray) -> np.ndarray:
    """What pixels add to the sums of the windows they lie in (n, TERMS), in numpy: their features
    (texture (4, n) and 1) pairwise, then each times their own texture value y (n,)."""
    f = np.concatenate([tex, np.ones((1, len(y)), np.int64)]).astype(np.int64)
    return np.concatenate([f[local._FIRST] * f[local._SECOND], f * y.astype(np.int64)]).T


def _window_sums(t: np.ndarray) -> np.ndarray:
    """The window sums (h, w, TERMS) of every pixel of rows whose `_terms` are t (h + 3, w, TERMS):
    3 rows above them (zeros above the image), then theirs; numpy's whole-image form (the
    encoder's before 0.18), the reference the compiled sums are held to."""
    h, w = t.shape[0] - 3, t.shape[1]
    reach = max(right for _, right in local.ROWS)
    # Each row's prefix sums through columns -LEFT - 1 .. w - 1 + reach: zeros, then the sums, the
    # row's total repeated where the window reaches past its end.
    pre = np.zeros((h + 3, local.LEFT + 1 + w + reach, local.TERMS), np.int64)
    np.cumsum(t, axis=1, out=pre[:, local.LEFT + 1 : local.LEFT + 1 + w])
    pre[:, local.LEFT + 1 + w :] = pre[:, local.LEFT + w : local.LEFT + 1 + w]
    out = np.zeros((h, w, local.TERMS), np.int64)
    for up, right in local.ROWS:
        rows = pre[3 - up : 3 - up + h]
        out += rows[:, local.LEFT + 1 + right : local.LEFT + 1 + right + w] - rows[:, :w]
    return out


@pytest.mark.parametrize("slope", [2, 3, 4])
def test_a_decoders_sums_made_a_wavefront_at_a_time_are_the_encoders(slope):
    """At every slope whose rows' spans the ring of prefix sums holds (3 slope + 4 <= RING; at
    slope 5 a window reads a cell its row's newest one overwrote)."""
    assert 3 * 4 + 4 <= local.RING < 3 * 5 + 4
    h, w = 23, 37
    r = np.random.default_rng(0)
    tex, y = r.integers(-255, 256, (4, h, w)), r.integers(-255, 256, (h, w))
    t = _terms(tex.reshape(4, -1), y.ravel()).reshape(h, w, local.TERMS)
    whole = _window_sums(np.concatenate([np.zeros((3, w, local.TERMS), np.int64), t]))
    pre = local.prefix_sums(h)
    for i, j in _wavefronts(h, w, slope):
        for a, b in zip(i, j):
            s = np.zeros(local.TERMS, np.int64)
            local.window_at(pre, a, b, w, s)
            assert np.array_equal(s, whole[a, b])
        for a, b in zip(i, j):
            local.add_at(pre, a, b, np.append(tex[:, a, b], 1), y[a, b])


def test_a_window_holds_only_pixels_decoded_before_it():
    h, w = 12, 16
    ones = np.zeros((h + 3, w, local.TERMS), np.int64)
    ones[3:, :, :] = 1  # every pixel counts 1 in every sum
    counts = _window_sums(ones)[..., 0]
    order = np.empty((h, w), np.int64)
    for t, (i, j) in enumerate(_wavefronts(h, w)):
        order[i, j] = t
    for i in range(h):
        for j in range(w):
            earlier = sum(
                1
                for up, right in local.ROWS
                for q in range(j - local.LEFT, j + right + 1)
                if 0 <= i - up and 0 <= q < w and order[i - up, q] < order[i, j]
            )
            assert counts[i, j] == earlier
    assert counts[5, 7] == 3 + 5 + 7 + 7  # a window away from the edges


def test_predictions_are_the_same_made_together_or_one_at_a_time():
    r = np.random.default_rng(1)
    tex = r.integers(-255, 256, (4, 200))
    values = r.integers(-255, 256, (200, 22))
    sums = np.stack([_terms(tex[:, :22] + r.integers(-3, 4, (4, 22)), v).sum(0) for v in values])
    together = local.predict(sums, tex)
    alone = np.concatenate([local.predict(sums[k : k + 1], tex[:, k : k + 1]) for k in range(200)])
    assert together.dtype == np.int64 and np.array_equal(together, alone)


def test_a_plane_of_one_gradient_is_predicted_within_a_quarter_level_inside():
    h, w = 20, 24
    ii, jj = np.mgrid[0:h, 0:w]
    plane = (3 * ii + 2 * jj + 40).astype(np.uint8)
    rgb = np.repeat(plane[..., None], 1, axis=2)
    lp = linear._Bands(rgb, 0, 2).lp.reshape(h, w)
    inside = np.s_[4:, 4:-4]
    # Exact but for the pull of the prior (RIDGE pixels' worth against 22).
    assert np.abs(lp[inside] - local.STEPS * plane[inside].astype(np.int64)).max() <= local.STEPS // 4


def _elementwise(sums: np.ndarray, tex: np.ndarray) -> np.ndarray:
    """`local.predict` in numpy's elementwise operations on whole arrays (how files before 0.15 were
    written): the compiled form must give the same integers, bit for bit."""
    s = sums.astype(np.float64).T
    n, k_ = s.shape[1], local.K
    m = np.zeros((k_ + 2, k_ + 2, n))
    m[:k_, :k_] = s[local._SYMMETRIC] + local._RIDGES
    m[k_, :k_] = m[:k_, k_] = s[len(local.PAIRS) :] + local._PRIORS
    m[k_ + 1, :k_] = m[:k_, k_ + 1] = np.concatenate([tex, np.ones((1, n))])
    for k in range(k_):
        m[k, k] = np.sqrt(m[k, k])
        m[k + 1 :, k] /= m[k, k]
        m[k + 1 :, k + 1 :] -= m[k + 1 :, k][:, None] * m[k + 1 :, k][None, :]
    p = m[k_, 0] * m[k_ + 1, 0]
    for k in range(1, k_):
        p = p + m[k_, k] * m[k_ + 1, k]
    return np.clip(np.floor(p * local.STEPS + 0.5), local.LOW, local.HIGH).astype(np.int64)


def test_compiled_predictions_are_those_of_the_elementwise_form_bit_for_bit():
    r = np.random.default_rng(2)
    n = 20000
    tex = r.integers(-255, 256, (4, n))
    # Windows of 0 to 22 pixels, smooth to noisy, so that every size of sum and rounding occurs.
    count = r.integers(0, 23, n)
    noise = r.choice([0, 1, 4, 60], n)
    sums = np.zeros((n, local.TERMS), np.int64)
    for k in range(n):
        t = tex[:, k : k + 1] + r.integers(-noise[k], noise[k] + 1, (4, count[k]))
        v = (t[0] + t[1]) // 2 + r.integers(-noise[k], noise[k] + 1, count[k])
        sums[k] = _terms(t, v).sum(0)
    mine, theirs = local.predict(sums, tex), _elementwise(sums, tex)
    assert mine.dtype == np.int64 and np.array_equal(mine, theirs)
    # Not all at the clip or the prior: the systems are solved.
    assert len(np.unique(mine)) > 1000


def test_the_encoders_whole_plane_is_predicted_as_from_its_window_sums():
    r = np.random.default_rng(2)
    for h, w in ((23, 37), (1, 1), (2, 5), (9, 1), (6, 3), (4, 60)):
        tex, y = r.integers(-255, 256, (4, h, w)), r.integers(-255, 256, (h, w))
        t = _terms(tex.reshape(4, -1), y.ravel()).reshape(h, w, local.TERMS)
        sums = _window_sums(np.concatenate([np.zeros((3, w, local.TERMS), np.int64), t]))
        expected = local.predict(sums.reshape(-1, local.TERMS), tex.reshape(4, -1))
        assert np.array_equal(local.predict_plane(tex, y), expected)
