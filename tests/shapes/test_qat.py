"""Quantisation-aware fine-tuning: the straight-through quantiser, and fine-tuning that packs to what it saw."""

import pytest
import torch
import torch.nn.functional as F

from sine_fields.shapes.field import FieldConfig
from sine_fields.shapes.ground_truth import Normalisation
from sine_fields.shapes.pack import code_widths, dequantise_rows, pack_bytes, quantise_rows, unpack_bytes
from sine_fields.shapes.qat import FakeQuantise, finetune_quantised


@pytest.mark.parametrize("bits, block", [(8, 0), (10, 0), (4, 16)])
def test_fake_quantise_is_the_coded_value_forward_and_the_identity_backward(bits, block):
    torch.manual_seed(0)
    weight = torch.randn(8, 40, requires_grad=True)
    out = FakeQuantise(bits, block)(weight)
    expected = dequantise_rows(*quantise_rows(weight, bits, block), weight.shape, block)
    # weight + (quantised - weight): the quantised value up to one float32 rounding.
    torch.testing.assert_close(out.detach(), expected, rtol=0, atol=1e-6)
    assert (expected - weight.detach()).abs().max() > 1e-3
    scale = torch.randn(8, 40)
    (out * scale).sum().backward()
    assert torch.equal(weight.grad, scale)


def _sphere_problem(seed=0):
    """A small sine field, briefly fitted to the occupancy of a sphere of radius 0.3."""
    generator = torch.Generator().manual_seed(seed)
    points = torch.rand(4096, 3, generator=generator) - 0.5
    target = (points.norm(dim=1) < 0.3).float()
    torch.manual_seed(seed)
    config = FieldConfig(rank=2, width=32, omega=30.0)
    field = config.build()
    optimiser = torch.optim.Adam(field.parameters(), lr=3e-3)
    for _ in range(150):
        loss = F.binary_cross_entropy_with_logits(field(points), target)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return config, field, points, target


def _loss(field, points, target):
    return F.binary_cross_entropy_with_logits(field(points), target)


def test_fine_tuning_lowers_the_loss_of_the_quantised_field_and_packs_to_what_it_saw():
    config, field, points, target = _sphere_problem()
    names = list(field.state_dict())
    # 4-bit codes everywhere: coarse enough that quantising as trained visibly hurts.
    widths = {name: 4 for name in names}
    normalisation = Normalisation((0.0, 0.0, 0.0), 1.0)

    def quantised_loss(f):
        packed = unpack_bytes(pack_bytes(config, f.state_dict(), normalisation, 8, widths))
        with torch.no_grad():
            return _loss(packed.field, points, target).item(), packed

    with torch.no_grad():
        float_loss = _loss(field, points, target).item()
    before, _ = quantised_loss(field)
    losses = finetune_quantised(field, points, target, _loss, steps=100, batch_size=1024, lr=1e-3, widths=widths)
    after, packed = quantised_loss(field)
    assert len(losses) == 10 and before > float_loss and after < before, (float_loss, before, after)
    # The parametrisations are gone (the same state_dict names), the latent float weights kept, and the packed
    # file holds exactly the values the fine-tuning's quantiser produced from them.
    assert list(field.state_dict()) == names
    for name, value in field.state_dict().items():
        seen = dequantise_rows(*quantise_rows(value, 4), value.shape)  # what FakeQuantise(4) gave forward
        assert torch.equal(packed.field.state_dict()[name], seen), name


def test_zero_steps_leave_the_field_unchanged():
    config = FieldConfig(rank=1, width=16)
    field = config.build()
    state = {k: v.clone() for k, v in field.state_dict().items()}
    widths = code_widths(config, list(state), 8)
    assert finetune_quantised(field, torch.zeros(4, 3), torch.zeros(4), _loss, 0, 4, 1e-3, widths) == []
    assert all(torch.equal(state[k], v) for k, v in field.state_dict().items())
