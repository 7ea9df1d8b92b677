import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nfcompress.coding import PRECISION, Decoder, Encoder, coarse_weights, fine_weights, plan_buckets


def _mixtures(n, m, seed, scale_mu=0.0):
    r = np.random.default_rng(seed)
    lw = np.log(r.dirichlet(np.ones(m), n)).astype(np.float32)
    mu = (128 + r.normal(0, 20, (n, m))).astype(np.float32)
    ls = r.normal(0.5, 1.0, (n, m)).astype(np.float32)
    return lw, mu, ls


@pytest.mark.parametrize("legacy", [False, True])
def test_tables_are_non_negative_integers_summing_to_the_precision(legacy):
    lw, mu, ls = _mixtures(5000, 3, 0)
    buckets = plan_buckets(lw, mu, ls, legacy)
    assert len({b.bin for b in buckets}) > 1  # both single- and two-stage tables are exercised
    for b in buckets:
        rows = np.arange(len(b.index))
        tables = [coarse_weights(b)] + ([fine_weights(b, rows, rows % b.bins)] if b.bin > 1 else [])
        for w in tables:
            assert (w >= 0).all()
            assert np.array_equal(w, np.floor(w))
            assert np.all(w.sum(1) + w.shape[1] == 2**PRECISION)


def test_tables_are_deterministic():
    lw, mu, ls = _mixtures(3000, 2, 1)
    a, b = plan_buckets(lw, mu, ls), plan_buckets(lw.copy(), mu.copy(), ls.copy())
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x.low, y.low) and np.array_equal(coarse_weights(x), coarse_weights(y))


def _roundtrip(values, lw, mu, ls, legacy=False):
    tables = plan_buckets(lw, mu, ls, legacy)
    enc = Encoder()
    enc.push_latents(values, tables)
    data = enc.finish()
    dec = Decoder(data)
    out = dec.pop_latents(len(values), tables)
    assert dec.exhausted()
    return out, data


@pytest.mark.parametrize("legacy", [False, True])
def test_push_pop_is_exact_with_escapes_and_near_the_ideal_size(legacy):
    n = 20000
    lw, mu, ls = _mixtures(n, 3, 2)
    r = np.random.default_rng(3)
    comp = np.array([r.choice(3, p=np.exp(w) / np.exp(w).sum()) for w in lw])
    values = np.round(mu[np.arange(n), comp] + r.logistic(0, 1, n) * np.exp(ls[np.arange(n), comp])).astype(np.int64)
    values[:5] = [10**6, -(10**6), 0, 2**30, -(2**30)]
    out, data = _roundtrip(values, lw, mu, ls, legacy)
    assert np.array_equal(out, values)
    # ideal bits from the float mixture, outliers excluded
    v = values[5:, None].astype(np.float64)
    s = np.exp(ls[5:].astype(np.float64))
    cdf = lambda t: 0.5 + 0.5 * np.tanh((t - mu[5:]) / (2 * s))  # noqa: E731
    ideal = -np.log2((np.exp(lw[5:]) * (cdf(v + 0.5) - cdf(v - 0.5))).sum(1)).sum()
    assert 8 * len(data) < ideal * 1.01 + 5 * 60 + 64


def test_two_groups_pop_in_reverse_push_order():
    lw, mu, ls = _mixtures(100, 1, 4)
    a = np.round(mu[:, 0]).astype(np.int64)
    b = a + 3
    enc = Encoder()
    enc.push_latents(a, plan_buckets(lw, mu, ls))
    enc.push_latents(b, plan_buckets(lw, mu + 3, ls))
    dec = Decoder(enc.finish())
    assert np.array_equal(dec.pop_latents(100, plan_buckets(lw, mu + 3, ls)), b)
    assert np.array_equal(dec.pop_latents(100, plan_buckets(lw, mu, ls)), a)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(-(2**20), 2**20), min_size=1, max_size=50),
    st.floats(-3, 5, allow_subnormal=False),
    st.floats(-50, 300, allow_subnormal=False),
)
def test_any_integers_round_trip(vals, log_scale, mean):
    n = len(vals)
    lw = np.zeros((n, 1), np.float32)
    mu = np.full((n, 1), mean, np.float32)
    ls = np.full((n, 1), log_scale, np.float32)
    out, _ = _roundtrip(np.array(vals, np.int64), lw, mu, ls)
    assert out.tolist() == vals


def test_corrupt_stream_length_is_refused():
    from nfcompress.errors import FormatError

    with pytest.raises(FormatError):
        Decoder(b"abc")


def test_windows_of_17_or_more_integers_code_in_two_stages():
    # Scales of 0.35, 0.7 and 1.5 reach 3.5, 7 and 15 from the mean: windows of 9, 17 and 33 integers.
    lw, mu = np.zeros((3, 1), np.float32), np.full((3, 1), 100.0, np.float32)
    ls = np.log(np.array([[0.35], [0.7], [1.5]], np.float32))
    new = {b.half: b.bin for b in plan_buckets(lw, mu, ls)}
    old = {b.half: b.bin for b in plan_buckets(lw, mu, ls, legacy=True)}
    assert new[4] == old[4] == 1 and new[8] > 1 and new[16] > 1 and old[8] == old[16] == 1
