import itertools

import pytest
import torch

from nfcompress.coders.flow.orientation import ORIENTATIONS, candidates, orient, unorient


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 3, 6, 6)])
def test_unorient_undoes_orient(shape):
    x = torch.arange(torch.tensor(shape).prod()).reshape(shape).float()
    for k in range(ORIENTATIONS):
        assert torch.equal(unorient(orient(x, k), k), x)


def test_the_eight_orientations_differ():
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    turned = [orient(x, k) for k in range(ORIENTATIONS)]
    assert all(not torch.equal(a, b) for a, b in itertools.combinations(turned, 2))


def test_candidates_keep_the_shape_of_tiles_that_are_not_square():
    for effort in (1, 2, 3):
        assert all(k < 4 for k in candidates(effort, square=False))
        assert candidates(effort, True)[0] == 0
    with pytest.raises(ValueError):
        candidates(4, True)
