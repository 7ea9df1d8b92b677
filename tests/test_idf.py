import pytest
import torch
from conftest import TINY, make_tiny

from nfcompress.flows import IDF, IDFConfig, log2_prob, split_params
from nfcompress.weights import ModelCard, hash_state, load_model, save_model


@pytest.mark.parametrize("shape", [(2, 8, 8), (1, 16, 24), (3, 32, 32), (1, 40, 8)])
def test_model_inverts_exactly(tiny_model, shape):
    b, h, w = shape
    g = torch.Generator().manual_seed(h * w)
    x = torch.randint(0, 256, (b, 3, h, w), generator=g).float()
    x[0, :, 0, 0] = 0.0
    x[-1, :, -1, -1] = 255.0
    with torch.no_grad():
        latents = tiny_model(x)
        tiny_model.set_shape(b, h, w)
        assert torch.equal(tiny_model.inverse(latents), x)
        assert all(torch.equal(z, z.round()) for z in latents)
        assert sum(z[0].numel() for z in latents) == 3 * h * w


def test_forward_with_params_matches_forward_and_bits(tiny_model):
    x = torch.randint(0, 256, (2, 3, 16, 16)).float()
    with torch.no_grad():
        latents, params = tiny_model.forward_with_params(x)
        for a, b in zip(latents, tiny_model(x)):
            assert torch.equal(a, b)
        manual = -sum(log2_prob(z, split_params(r, TINY.mixtures)).flatten(1).sum(1) for z, r in zip(latents, params))
        assert torch.allclose(manual, tiny_model.bits(x))


def test_gradients_reach_every_parameter():
    model = make_tiny(3).train()
    x = torch.randint(0, 256, (2, 3, 16, 16)).float()
    model.bits(x).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


def test_train_and_eval_agree(tiny_model):
    x = torch.randint(0, 256, (1, 3, 16, 16)).float()
    with torch.no_grad():
        a = tiny_model.train().bits(x)
        b = tiny_model.eval().bits(x)
    assert torch.equal(a, b)


def test_save_and_load_round_trip(tmp_path, tiny_model):
    card = save_model(tiny_model, tmp_path / "m.safetensors", ModelCard("m", {}))
    loaded, card2 = load_model(tmp_path / "m.safetensors")
    assert card2.sha256 == card.sha256
    assert hash_state(loaded) == hash_state(tiny_model)
    assert IDFConfig.from_dict(card2.config) == TINY


def test_load_refuses_tampered_weights(tmp_path, tiny_model):
    from nfcompress.errors import NfcError

    save_model(tiny_model, tmp_path / "m.safetensors", ModelCard("m", {}))
    data = bytearray((tmp_path / "m.safetensors").read_bytes())
    data[-1] ^= 1
    (tmp_path / "m.safetensors").write_bytes(bytes(data))
    with pytest.raises(NfcError, match="sha256"):
        load_model(tmp_path / "m.safetensors")


def test_bad_top_groups_are_refused():
    with pytest.raises(ValueError):
        IDF(IDFConfig(top_groups=[8, 8]))


def test_model_without_checkerboard_inverts_and_old_cards_load_without_it():
    cfg = IDFConfig.from_dict({k: v for k, v in TINY.to_dict().items() if k != "checkerboard"})
    assert cfg.checkerboard is False
    torch.manual_seed(3)
    model = IDF(cfg).eval()
    x = torch.randint(0, 256, (2, 3, 16, 24)).float()
    with torch.no_grad():
        latents = model(x)
        model.set_shape(2, 16, 24)
        assert torch.equal(model.inverse(latents), x)
    assert len(latents) == len(model.steps()) == len(IDF(TINY).steps()) // 2
