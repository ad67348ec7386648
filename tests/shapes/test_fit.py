from dataclasses import replace

import numpy as np
import pytest
import torch

from sine_fields.fields import MLPConfig
from sine_fields.shapes.field import FieldConfig
from sine_fields.shapes.fit import TrainConfig, fit, load_field, new_field
from sine_fields.shapes.ground_truth import GroundTruth
from sine_fields.shapes.metrics import iou
from sine_fields.shapes.sampling import evaluation_points

from .conftest import sphere_mesh

SMALL = MLPConfig(n_neurons=32, n_hidden_layers=3, activation="ReLU", linear="sine", rank=2, omega=30.0)


@pytest.fixture(scope="module")
def gt():
    return GroundTruth(sphere_mesh(3))


@pytest.mark.parametrize("target, activation, eikonal", [("occupancy", "Gaussian", 0.0), ("sdf", "ReLU", 0.001)])
def test_small_sine_field_learns_a_sphere(gt, target, activation, eikonal):
    torch.set_num_threads(1)
    config = FieldConfig.from_mlp(replace(SMALL, activation=activation), target=target)
    train = TrainConfig(steps=150, batch_size=1024, samples=20_000, lr=3e-3, eikonal_weight=eikonal)
    result = fit(gt, new_field(config, train.seed), train, progress=False)
    uniform, _ = evaluation_points(gt, 5000)
    assert iou(result.field.inside(uniform.points), uniform.occupancy) > 0.9
    assert result.losses[-1] < result.losses[0]


def test_interrupted_fit_resumes_to_identical_weights(gt, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    config = FieldConfig.from_mlp(SMALL)
    train = TrainConfig(steps=20, batch_size=256, samples=2000, checkpoint_every=10)
    reference = fit(gt, new_field(config, train.seed), train, checkpoint=tmp_path / "a.pt", progress=False)

    calls = {"n": 0}
    original = torch.optim.Adam.step

    def interrupt_at_15(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 15:
            raise KeyboardInterrupt
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", interrupt_at_15)
    with pytest.raises(KeyboardInterrupt):
        fit(gt, new_field(config, train.seed), train, checkpoint=tmp_path / "b.pt", progress=False)
    monkeypatch.setattr(torch.optim.Adam, "step", original)
    resumed = fit(gt, new_field(config, train.seed), train, checkpoint=tmp_path / "b.pt", progress=False)
    assert resumed.resumed_from == 10
    for a, b in zip(reference.field.state_dict().values(), resumed.field.state_dict().values()):
        assert torch.equal(a, b)
    loaded = load_field(config, tmp_path / "b.pt", torch.device("cpu"))
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (100, 3))
    assert np.array_equal(loaded.values(points), reference.field.values(points))


def test_learning_rate_decays_on_a_cosine_to_five_percent(gt):
    # Closed form: lr_t = lr (0.05 + 0.95 (1 + cos(pi t / T)) / 2); read back from the optimiser.
    config = FieldConfig.from_mlp(SMALL)
    train = TrainConfig(steps=8, batch_size=64, samples=500, lr=1e-2)
    seen = []
    original = torch.optim.Adam.step

    def record(self, *args, **kwargs):
        seen.append(self.param_groups[0]["lr"])
        return original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(torch.optim.Adam, "step", record)
        fit(gt, new_field(config, 0), train, progress=False)
    expected = [train.lr * (0.05 + 0.95 * (1 + np.cos(np.pi * t / train.steps)) / 2) for t in range(train.steps)]
    assert np.allclose(seen, expected, rtol=1e-9)
