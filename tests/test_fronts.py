"""The linear model's compiled decoder step (`linear.fronts`) says of every wavefront what the
numpy step it replaced said, integer for integer, in every scheme, class count and block grid."""

import functools

import numpy as np
import pytest
from conftest import photo_like

from nfcompress.coders.linear import fronts, local
from nfcompress.coders.linear import model as linear
from nfcompress.coding.primitives import wavefronts

m = linear  # the numpy step's helpers


def test_the_step_knows_the_models_layout():
    assert (fronts.TOP, fronts.LEFT, fronts.RIGHT) == (m.TOP, m.LEFT, m.RIGHT)
    assert (fronts.BINS, fronts.BLOCK, fronts.ERRORS) == (m.BINS, m.BLOCK, m.ERRORS)


def _spread(cv, cp, x, i, j, width, cw):
    if not len(j):
        return
    if j[0] == width - 1:
        cv[cp[0] + 1 : cp[0] + m.RIGHT + 1] = x[0]
    if j[-1] == 0 and i[-1] < cv.size // cw - m.TOP - 1:
        cv[cp[-1] + cw - m.LEFT : cp[-1] + cw] = x[-1]
    if i[0] == 0 and j[0] + m.LEFT < width + m.RIGHT:
        cv[j[0] + 2 * m.LEFT : m.TOP * cw : cw] = x[0]


def _window(pre, i, j, w):
    out = np.zeros((len(i), local.TERMS), np.int64)
    for n in range(len(i)):
        local.window_at(pre, i[n], j[n], w, out[n])
    return out


def _numpy_planes(model, height, width, channels, values, scheme):
    """`linear.decode_planes` as it was before the compiled step: a wavefront in numpy steps."""
    out = np.empty((height, width, channels), np.uint8)
    cross_err = np.zeros(height * width, np.int32)
    for c in range(channels):
        layout = m._Layout(height, width, c, model.classes, scheme)
        pads = m._pads([out[..., q] for q in range(c)])
        cw = layout.cw
        cv = np.full((height + m.TOP) * cw, m.OUTSIDE, np.int32)
        err, first = np.zeros_like(cv), np.zeros_like(cv)
        pre = local.prefix_sums(height) if m._local_on(model.classes, scheme) else None
        for i, j in wavefronts(height, width):
            x = layout.raw(cv, pads, i, j)
            if pre is not None:
                lp = local.predict(_window(pre, i, j, width), layout.texture(x))
                lp = lp + local.STEPS * x[len(layout.offsets)] if c else lp
            x = layout.features(cv, pads, i, j, None if pre is None else lp)
            cp = layout.places(i, j)
            near = layout.around(cp)
            grad = layout.gradients(x)
            p = p1 = m._prediction(x, model.weights[c], m._class_of(grad, model.classes, i, j, width, model.blocks))
            if model.feedback is not None:
                p = m._feedback(p1, first[near], model.feedback[c])
            act = m._activity(err[near], cross_err[i * width + j])
            contexts = m._contexts(grad, act, i, j, model.classes, scheme, model.blocks)
            if model.spikes is not None:
                med = m._median(x).astype(np.int64)
                even = m._evenness(m._equalities(layout.texture(x)), med == m._round(p))
                q = model.spikes[c][m._spike_contexts(even, act, model.classes)].astype(np.int64)
            else:
                med = q = np.zeros(len(i), np.int64)
            v = values(m.Front(c, i, j, np.asarray(p, np.int64), contexts, med, q))
            cv[cp] = v
            err[cp] = np.abs(v - m._round(p))
            first[cp] = v - m._round(p1)
            if pre is not None:
                y = v - x[len(layout.offsets)] if c else v
                tex = layout.texture(x)
                for n in range(len(i)):
                    local.add_at(pre, i[n], j[n], np.append(tex[:, n], 1), y[n])
            _spread(cv, cp, v, i, j, width, cw)
        out[..., c] = cv.reshape(height + m.TOP, cw)[m.TOP :, m.LEFT : m.LEFT + width]
        cross_err += m.CROSS_ERR * err.reshape(height + m.TOP, cw)[m.TOP :, m.LEFT : m.LEFT + width].ravel()
    return out


def _model(channels, classes, blocks, scheme, seed):
    """A random model of this shape: weights near an average of the neighbours, any scales and spikes."""
    r = np.random.default_rng(seed)
    sets = m._sets(classes, blocks)
    weights = []
    for n in m._feature_counts(channels, classes, scheme):
        w = r.integers(-(1 << 10), 1 << 10, (sets, n)) * m._weight_step(classes, scheme)
        w[:, 0] += 1 << (linear.FRAC_BITS - 1)
        weights.append(w)
    scales = [r.integers(0, 256, m._context_count(classes, scheme)) for _ in range(channels)]
    if scheme == 1:
        return linear.LinearModel(weights, scales)
    spikes = [r.integers(0, m.SPIKES, m._spike_count(classes)) for _ in range(channels)]
    feedback = [r.integers(-400, 400, m.ERRORS) * m._weight_step(classes, scheme) for _ in range(channels)]
    return linear.LinearModel(weights, scales, spikes, feedback, blocks if scheme >= 3 else None)


def _fronts(planes, model, img, scheme):
    """Every `Front` that `planes` hands out decoding `img` (its pixels as the values), and the image."""
    seen = []

    def values(f):
        seen.append(f)
        return img[f.i, f.j, linear.coding_order(img.shape[2])[f.c]].astype(np.int64)

    out = planes(model, img.shape[0], img.shape[1], img.shape[2], values, scheme=scheme)
    return seen, out


@pytest.mark.parametrize("scheme", [1, 2, 3])
@pytest.mark.parametrize("classes, blocks", [(1, None), (2, (3, 5)), (4, None), (4, (0, 7)), (8, (6, 1))])
@pytest.mark.parametrize("shape", [(19, 23, 3), (12, 9, 1), (1, 7, 3), (6, 1, 3), (2, 2, 3)])
def test_the_compiled_step_says_what_the_numpy_step_said(scheme, classes, blocks, shape):
    img = photo_like(*shape, seed=sum(shape) + classes)
    img[: shape[0] // 2, : shape[1] // 3] = 200  # flat patches, where the spike's contexts turn
    model = _model(shape[2], classes, blocks, scheme, seed=classes + 10 * scheme)
    expected, before = _fronts(lambda *a, **k: _numpy_planes(*a[:5], k["scheme"]), model, img, scheme)
    got, after = _fronts(linear.decode_planes, model, img, scheme)
    order = np.argsort(linear.coding_order(shape[2]))
    assert np.array_equal(after, img) and np.array_equal(before[..., order], img)
    assert len(got) == len(expected) == shape[2] * len(list(wavefronts(*shape[:2])))
    for a, b in zip(got, expected):
        for name in m.Front._fields:
            assert np.array_equal(np.asarray(getattr(a, name)), np.asarray(getattr(b, name))), name
            if name != "c":
                assert np.asarray(getattr(a, name)).dtype == np.int64, name


@pytest.mark.parametrize("slope", [2, 3])
def test_the_compiled_step_gives_a_fitted_photo_the_encoders_predictions_and_contexts(slope):
    """In the wavefronts of either slope the adaptive model decodes in (`adaptive.model.slope_of`)."""
    img = photo_like(130, 128, 3, seed=4)
    fit = linear.fitted(img)
    assert fit.model.classes == 2 and linear._local_on(fit.model.classes)
    got, out = _fronts(functools.partial(linear.decode_planes, slope=slope), fit.model, img, linear.SCHEME)
    assert len(got) == 3 * (slope * 129 + 128)
    assert np.array_equal(out, img)
    for f in got:
        k = f.i * img.shape[1] + f.j
        assert np.array_equal(f.p, fit.predictions(f.c)[k])
        assert np.array_equal(fit.model.scales[f.c][f.contexts], fit.scale_codes(f.c)[k])


def test_wavefronts_steeper_than_the_local_predictors_prefix_sums_hold_are_refused():
    img = photo_like(12, 16, 3, seed=5)
    with pytest.raises(ValueError, match="slope 5"):
        _fronts(functools.partial(linear.decode_planes, slope=5), linear.fitted(img).model, img, linear.SCHEME)
