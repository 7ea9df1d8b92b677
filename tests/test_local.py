"""The linear model's local predictor: the decoder's sums are the encoder's, and its predictions
are exact integers that do not depend on how many are made at once."""

import numpy as np

from nfcompress.coders.linear import local
from nfcompress.coders.linear import model as linear
from nfcompress.coding.primitives import wavefronts


def _wavefronts(h: int, w: int):
    return list(wavefronts(h, w))


def test_a_decoders_sums_made_a_wavefront_at_a_time_are_the_encoders():
    h, w = 23, 37
    r = np.random.default_rng(0)
    t = r.integers(-3000, 3000, (h, w, local.TERMS))
    whole = local.window_sums(np.concatenate([np.zeros((3, w, local.TERMS), np.int64), t]))
    sums = local.Sums(h, w)
    for i, j in _wavefronts(h, w):
        assert np.array_equal(sums.window(i, j), whole[i, j])
        sums.add(i, j, t[i, j])


def test_a_window_holds_only_pixels_decoded_before_it():
    h, w = 12, 16
    ones = np.zeros((h + 3, w, local.TERMS), np.int64)
    ones[3:, :, :] = 1  # every pixel counts 1 in every sum
    counts = local.window_sums(ones)[..., 0]
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
    sums = np.stack([local.terms(tex[:, :22] + r.integers(-3, 4, (4, 22)), v).sum(0) for v in values])
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
