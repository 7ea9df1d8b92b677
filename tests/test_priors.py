import math

import torch

from nfcompress.flows import MixtureParams, log2_prob, split_params
from nfcompress.flows.priors import ConditionalPrior, ContextPrior, TopPrior


def _params(m=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(1, 3 * m * 2, 1, 1, generator=g, dtype=torch.float64)
    return split_params(raw, m)


def test_probabilities_over_the_integers_sum_to_one():
    p = _params()
    z = torch.arange(-3000, 3300, dtype=torch.float64).view(1, 1, -1, 1).expand(1, 2, -1, 1)
    expanded = MixtureParams(*(t.expand(1, -1, 2, z.shape[2], 1) for t in (p.log_weights, p.means, p.log_scales)))
    total = (2.0 ** log2_prob(z, expanded)).sum(dim=2)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-9)


def test_bits_equal_minus_log2_of_the_discrete_probability():
    p = _params(seed=1)
    for value in [-5.0, 0.0, 97.0, 128.0, 255.0]:
        z = torch.full((1, 2, 1, 1), value, dtype=torch.float64)
        got = log2_prob(z, p)
        w = p.log_weights.exp()
        s = p.log_scales.exp()
        mass = (w * (torch.sigmoid((value + 0.5 - p.means) / s) - torch.sigmoid((value - 0.5 - p.means) / s))).sum(1)
        assert torch.allclose(got, torch.log2(mass), atol=1e-9, rtol=1e-9)


def test_far_tails_stay_finite():
    p = _params(seed=2)
    z = torch.full((1, 2, 1, 1), 1e5, dtype=torch.float64)
    assert torch.isfinite(log2_prob(z, p)).all()


def test_conditional_prior_shapes_and_fresh_components_differ():
    prior = ConditionalPrior(kept=6, out=3, mixtures=4, width=8, blocks=1)
    raw = prior(torch.zeros(2, 6, 4, 4))
    assert raw.shape == (2, 3 * 4 * 3, 4, 4)
    p = split_params(raw, 4)
    assert len(set(p.means[0, :, 0, 0, 0].tolist())) == 4
    top = TopPrior(out=5, mixtures=2)
    assert top(3, 2, 2).shape == (3, 3 * 2 * 5, 2, 2)
    assert math.isclose(float(split_params(top(1, 1, 1).detach(), 2).log_weights.exp().sum(1)[0, 0]), 1.0, rel_tol=1e-6)


def test_context_prior_centres_on_the_neighbours_of_flat_ground():
    from nfcompress.flows.idf import anchors

    prior = ContextPrior(kept=4, out=2, mixtures=3, width=8, blocks=1)
    z = torch.full((1, 2, 5, 6), 37.0)
    m = anchors(5, 6, z.device)
    z[:, :, ~m] = 1000.0  # what is not yet decoded must not matter
    p = split_params(prior(torch.zeros(1, 4, 5, 6), z, m), 3)
    # the middle component of a fresh prior sits on the average of the coded neighbours
    assert torch.allclose(p.means[:, 1][:, :, ~m], torch.full_like(p.means[:, 1][:, :, ~m], 37.0))
