"""The output layer tuned as an image codes (`causal.online`): its gradient, and that the
encoder's loop and the decoder's steps give the same integers."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nfcompress.coders.causal import online, symbols
from nfcompress.coders.causal.symbols import OUT_BITS
from nfcompress.coders.causal.train import mixture_bits
from nfcompress.coding.primitives import FRAC_BITS

K, HIDDEN = 3, 16
NETWORK = SimpleNamespace(out=np.zeros((HIDDEN, 3 * K)))  # a plane network's output layer: its shape


def _outputs(rng: np.random.Generator, n: int) -> np.ndarray:
    """Integer outputs (n, 3 K) like a network's: means near the centre, log scales -4..3, logits."""
    means = rng.normal(0, 0.4, (n, K))
    scales = rng.uniform(-4.5, 3, (n, K))
    logits = rng.normal(0, 2, (n, K))
    return np.rint(np.concatenate([means, scales, logits], 1) * 2**OUT_BITS)


def _case(seed: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hidden activations, outputs, centres and values of n sub-pixels, some at 0 and 255."""
    rng = np.random.default_rng(seed)
    hidden = rng.integers(0, 3000, (n, HIDDEN)).astype(np.float64)
    centre = rng.integers(0, 256 << FRAC_BITS, n)
    x = np.clip((centre >> FRAC_BITS) + rng.integers(-6, 7, n), 0, 255)
    x[::7], x[3::7] = 0, 255
    return hidden, _outputs(rng, n), centre, x


@pytest.mark.parametrize("value", [0, 1, 128, 254, 255])
def test_the_gradient_is_the_slope_of_the_bits_of_the_mixture_coded_even_far_in_the_tails(value):
    rng = np.random.default_rng(value)
    o = _outputs(rng, 400)
    o[:10, :K] = rng.choice([-30, 30], (10, K)) * 2**OUT_BITS  # means 480 grey levels off
    centre = np.clip(np.rint((value + rng.normal(0, 8, 400)) * 2**FRAC_BITS), 0, (256 << FRAC_BITS) - 1)
    p, q, mix = symbols.parts(o, centre.astype(np.int64))
    g, checked = np.empty(3 * K), 0
    for a in range(len(o)):
        online._gradient(p, q, mix, a, value, online._tables(), g, np.empty((3, K)))
        assert np.all(np.isfinite(g)) and np.all(np.abs(g) <= online.GRAD_LIMIT)
        # The reference: the float loss at the mixture the codec codes (means to 1/16, scale
        # codes, integer weights), differentiated by the float network's outputs.
        mine = np.concatenate([(p[a] >> 8) / 16 / 16, -4 + q[a] / 16, np.log(np.maximum(mix[a], 1e-30) / 4096)])
        t = torch.tensor(mine[None], requires_grad=True)
        bits = mixture_bits(t, torch.zeros(1, dtype=torch.float64), torch.tensor([float(value)]))
        (want,) = torch.autograd.grad(bits.sum() * math.log(2), t)
        mu, scale = torch.tensor((p[a] >> 8) / 16), torch.exp(torch.tensor(-4 + q[a] / 16))
        up = torch.sigmoid((value + 0.5 - mu) / scale) if value < 255 else torch.ones(K, dtype=torch.float64)
        down = torch.sigmoid((value - 0.5 - mu) / scale) if value > 0 else torch.zeros(K, dtype=torch.float64)
        # Compared where every component's mass is far above the tables' step (1 / T, about 6e-8)
        # and no scale code is at an end of its range, where the codec's slope is 0.
        if float((up - down).min()) > 1e-4 and ((q[a] > 0) & (q[a] < 255)).all():
            limit = online.GRAD_LIMIT / 2**online.GRAD_BITS
            want = np.clip(want.numpy()[0], -limit, limit)
            assert np.allclose(g / 2**online.GRAD_BITS, want, atol=3e-3, rtol=3e-3), (a, g, want)
            checked += 1
    assert checked >= 30


def _fronts(n: int, rng: np.random.Generator) -> np.ndarray:
    """Random wavefront ends over n sub-pixels (the last is n)."""
    cuts = np.sort(rng.choice(np.arange(1, n), 12, replace=False))
    return np.append(cuts, n)


def test_the_encoders_loop_is_the_decoders_steps():
    hidden, o, centre, x = _case(1, 300)
    ends = _fronts(len(x), np.random.default_rng(1))
    encoder = online.start(NETWORK, 2e-4)
    mine = o.copy()
    coded = online.adapt(encoder, hidden, mine, centre, x, ends)
    decoder = online.start(NETWORK, 2e-4)
    theirs, lo = o.copy(), 0
    for hi in ends:
        part = slice(lo, hi)
        online.correct(decoder, hidden[part], theirs[part])
        online.learn(decoder, hidden[part], symbols.parts(theirs[part], centre[part]), x[part])
        lo = hi
    assert np.array_equal(mine, theirs)
    assert all(np.array_equal(a, b) for a, b in zip(coded, symbols.parts(theirs, centre)))
    assert np.array_equal(encoder.change, decoder.change) and np.any(encoder.change != 0)
    assert np.all(encoder.change == np.rint(encoder.change))  # integers


def test_a_wavefronts_step_does_not_depend_on_the_order_of_its_sub_pixels():
    hidden, o, centre, x = _case(2, 200)
    ends = _fronts(len(x), np.random.default_rng(2))
    rng = np.random.default_rng(3)
    shuffled = np.concatenate([lo + rng.permutation(hi - lo) for lo, hi in zip(np.r_[0, ends[:-1]], ends)])
    a, b = online.start(NETWORK, 2e-4), online.start(NETWORK, 2e-4)
    oa, ob = o.copy(), o[shuffled].copy()
    online.adapt(a, hidden, oa, centre, x, ends)
    online.adapt(b, hidden[shuffled], ob, centre[shuffled], x[shuffled], ends)
    assert np.array_equal(a.change, b.change) and np.array_equal(a.mean_square, b.mean_square)
    assert np.array_equal(oa[shuffled], ob)


def test_images_decoded_together_are_tuned_apart():
    one, two = _case(4, 60), _case(5, 60)
    alone = []
    for hidden, o, centre, x in (one, two):
        t = online.start(NETWORK, 2e-4)
        o = o.copy()
        online.correct(t, hidden, o)
        online.learn(t, hidden, symbols.parts(o, centre), x)
        online.correct(t, hidden, o)
        alone.append((t.change[0], o))
    both = online.start(NETWORK, 2e-4, images=2)
    hidden, o, centre, x = (np.concatenate([a, b]) for a, b in zip(one, two))
    online.correct(both, hidden, o)
    online.learn(both, hidden, symbols.parts(o, centre), x)
    online.correct(both, hidden, o)
    assert np.array_equal(both.change[0], alone[0][0]) and np.array_equal(both.change[1], alone[1][0])
    assert np.array_equal(o, np.concatenate([alone[0][1], alone[1][1]]))


def test_steps_lower_the_bits_of_what_they_learn_from():
    hidden, o, centre, x = _case(6, 400)
    t = online.start(NETWORK, 2e-3)

    def bits() -> float:
        mine = o.copy()
        online.correct(t, hidden, mine)
        return float(
            mixture_bits(
                torch.from_numpy(mine / 2**OUT_BITS),
                torch.from_numpy(centre / 2**FRAC_BITS),
                torch.from_numpy(x.astype(np.float64)),
            ).sum()
        )

    before = bits()
    for _ in range(20):
        mine = o.copy()
        online.correct(t, hidden, mine)
        online.learn(t, hidden, symbols.parts(mine, centre), x)
    assert bits() < 0.98 * before


def test_the_first_step_moves_each_weight_by_the_rate():
    hidden, o, centre, x = _case(7, 100)
    t = online.start(NETWORK, 1e-3)
    online.learn(t, hidden, symbols.parts(o, centre), x)
    moved = np.abs(t.change[0][t.change[0] != 0]) / 2**online.CHANGE_BITS
    # RMSprop's mean of squares after one step is 1 - DECAY of the square: corrected for that
    # (Adam's bias correction), a step is the rate, less where epsilon counts
    assert len(moved) > 0.9 * t.change.size and np.all(moved <= 1e-3 + 2**-20) and np.median(moved) > 0.9e-3
    assert t.decayed[0] == online.DECAY


def test_the_gradient_and_the_step_round_every_operation_on_this_cpu():
    import re

    import numba
    from numba import float64, int64

    # Compiled afresh (cached code cannot be inspected): no fused multiply-add, which would round
    # otherwise than IEEE's separate operations and differ from CPUs without one.
    arrays, ints = float64[:, :], int64[:, :]
    tables = numba.typeof(online._tables())
    for fn, sig in [
        (online._gradient, (ints, ints, ints, int64, int64, tables, float64[:], arrays)),
        (online._step, (arrays, arrays, arrays, float64, float64)),
    ]:
        fresh = numba.njit(fn.py_func, error_model="numpy")
        fresh.compile(sig)
        asm = fresh.inspect_asm(sig)
        assert "ret" in asm and not re.search(r"\bv?fn?m(add|sub)\d{3}[sp]d", asm), fn.__name__
