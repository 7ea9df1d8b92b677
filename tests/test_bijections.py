import pytest
import torch

from nfcompress.flows import AdditiveCoupling, Permutation, round_ste, squeeze, unsqueeze
from nfcompress.flows.nets import ResNet


def _images(b, c, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (b, c, h, w), generator=g).float()
    x[0, 0, 0, 0], x[-1, -1, -1, -1] = 0.0, 255.0
    return x


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 12, 4, 6), (3, 1, 2, 2)])
def test_squeeze_inverts(shape):
    x = _images(*shape)
    y = squeeze(x)
    assert y.shape == (shape[0], 4 * shape[1], shape[2] // 2, shape[3] // 2)
    assert torch.equal(unsqueeze(y), x)


def test_permutation_inverts_and_permutes():
    p = Permutation(12, seed=3)
    x = _images(2, 12, 4, 4)
    assert not torch.equal(p(x), x)
    assert torch.equal(p.inverse(p(x)), x)


@pytest.mark.parametrize("channels,split", [(12, 6), (24, 12), (6, 3)])
def test_coupling_inverts_exactly_on_integers(channels, split):
    torch.manual_seed(0)
    net = ResNet(split, channels - split, 8, 1)
    with torch.no_grad():
        for q in net.parameters():
            q.add_(torch.randn_like(q) * 0.5)
    c = AdditiveCoupling(net, split)
    x = _images(2, channels, 6, 10)
    z = c(x)
    assert not torch.equal(z, x)
    assert torch.equal(z, z.round())
    assert torch.equal(c.inverse(z), x)


def test_round_ste_rounds_forward_and_passes_gradient():
    x = torch.tensor([0.4, 1.6, -2.5], requires_grad=True)
    y = round_ste(x)
    assert torch.equal(y.detach(), torch.round(x.detach()))
    y.sum().backward()
    assert torch.equal(x.grad, torch.ones(3))
