"""What the sine-nerf and sine-nerfacto models share: swapping field MLP layers, optional LPIPS,
checkpoint loading under torch's weights-only default, parameter-count logging, building a model
without a dataset."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import torch
from torch import nn

from sine_fields.convert import ConversionSummary, convert, count_parameters
from sine_fields.layers import DEFAULT_OMEGA, LowRankLinear, SineLowRankLinear

__all__ = [
    "Factorise",
    "FactorisedMLPOptions",
    "allow_checkpoint_globals",
    "alexnet_weights_path",
    "factorise_mlps",
    "lpips_only_if_available",
    "missing_lpips",
    "model_in_unit_box",
    "split_factors_u",
]

Factorise = Literal["all", "hidden"]
"""Which layers of each field MLP become low-rank: every one where the rank fits (about 5 % of the
dense NeRF field at rank 5, the paper's NeRF budget), or only the square hidden width x width ones."""


@dataclass
class FactorisedMLPOptions:
    """The layer options every model of this package shares (one definition; model configs inherit it)."""

    linear: Literal["dense", "lowrank", "sine"] = "sine"
    """Layer kind of the field MLPs: sine low-rank, plain low-rank, or dense (the stock model)."""
    rank: int = 5
    """Rank k of the factorised layers (the paper's NeRF experiment: k = 5)."""
    omega: float = DEFAULT_OMEGA
    """Sine frequency (sine only): larger gives a higher-rank weight and a rougher optimisation."""
    factorise: Factorise = "all"
    """Which MLP layers are factorised: all where the rank fits, or only the square width x width ones."""


def factorise_mlps(
    field: nn.Module,
    mlp_names: list[str],
    linear: str,
    rank: int,
    omega: float,
    factorise: Factorise,
) -> ConversionSummary:
    """Replace the ``nn.Linear`` layers of the MLPs ``field.get_submodule(name).layers`` in place.

    ``factorise="all"`` takes every layer of those MLPs, ``"hidden"`` only their square
    width x width layers (not the input, skip or narrow output layers). A layer whose
    ``min(in, out) < rank`` is skipped and listed in the summary. Field heads outside the MLPs
    (vanilla NeRF's density and RGB heads, 1 and 3 outputs) stay dense. ``linear="dense"`` changes nothing.
    """
    if factorise not in ("all", "hidden"):
        raise ValueError(f"factorise must be 'all' or 'hidden', got {factorise!r}")
    targets = []
    for name in mlp_names:
        for i, layer in enumerate(field.get_submodule(name).layers):
            square = layer.in_features == layer.out_features
            if type(layer) is nn.Linear and (factorise == "all" or square):
                targets.append(f"{name}.layers.{i}")
    if linear == "dense" or not targets:
        total = count_parameters(field)
        return ConversionSummary(kind="dense", parameters_before=total, parameters_after=total, trainable_after=total)
    # A regex on the whole qualified name, so that "mlp_base.layers.1" never matches "...layers.10".
    pattern = "|".join(t.replace(".", r"\.") for t in targets)
    return convert(field, linear, rank, omega=omega, target_modules=pattern)  # type: ignore[arg-type]


def split_factors_u(module: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(rest, factors_u)``: the ``U`` factor of every rank-k layer in ``module``, and all its other
    parameters, each once and in ``module.parameters()`` order, so that an optimiser can give ``U`` its
    own learning rate.

    Why ``U`` needs one: both factors start like ``nn.Linear`` weights (kaiming-uniform, bound
    ``1/sqrt(fan_in)``), so ``U`` (out x k, fan-in k) starts ``sqrt(in / k)`` times larger than ``V``
    (k x in; about 7x for a 256-wide layer at k = 5). Adam moves every entry by about the learning rate
    whatever its size, so at one rate ``U`` changes by a 7x smaller fraction per step than ``V`` and
    ``U V`` follows ``V``'s steps, not ``U``'s."""
    factors_u = [m.U for m in module.modules() if isinstance(m, (SineLowRankLinear, LowRankLinear))]
    taken = {id(p) for p in factors_u}
    return [p for p in module.parameters() if id(p) not in taken], factors_u


def describe(name: str, summary: ConversionSummary, linear: str, rank: int, omega: float) -> str:
    """One log line: a field's parameter count against its dense version."""
    kind = "dense" if linear == "dense" else f"{linear} rank {rank}" + (f" omega {omega:g}" if linear == "sine" else "")
    ratio = summary.parameters_after / max(summary.parameters_before, 1)
    text = (
        f"{name}: {summary.parameters_after:,} parameters ({kind}, {len(summary.changed)} layers factorised; "
        f"dense field {summary.parameters_before:,}, {ratio:.1%})"
    )
    if summary.skipped:
        text += f"; kept dense (rank does not fit): {', '.join(summary.skipped)}"
    return text


# --- LPIPS -----------------------------------------------------------------------------------------


def alexnet_weights_path() -> Path:
    """Where torchvision caches the AlexNet weights that torchmetrics' LPIPS loads."""
    from torchvision.models import AlexNet_Weights

    filename = os.path.basename(AlexNet_Weights.IMAGENET1K_V1.url)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


class _MissingLPIPS(nn.Module):
    """Stands in for LPIPS when its weights are absent. Returns NaN so that a stock metrics function
    runs to its end; our models then drop the key, so no LPIPS value is ever reported."""

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return torch.tensor(float("nan"))


def missing_lpips(module: nn.Module | None) -> bool:
    return isinstance(module, _MissingLPIPS)


_said_lpips = False


@contextlib.contextmanager
def lpips_only_if_available() -> Iterator[None]:
    """While a stock nerfstudio ``populate_modules`` runs, build LPIPS only if AlexNet's weights are
    already on disk.

    Stock models construct torchmetrics' LPIPS unconditionally, which downloads AlexNet at start-up
    and fails offline (URLError). The stock code imports the class from ``torchmetrics.image.lpip``
    inside ``populate_modules``, so swapping that one attribute for the duration of the call is
    enough; it is restored on exit. Says once per process that LPIPS is off.
    """
    global _said_lpips
    import torchmetrics.image.lpip as lpip_module

    real = lpip_module.LearnedPerceptualImagePatchSimilarity
    weights = alexnet_weights_path()
    if weights.exists():
        yield
        return

    def build(*args, **kwargs) -> nn.Module:
        return _MissingLPIPS()

    if not _said_lpips:
        from nerfstudio.utils.rich_utils import CONSOLE

        CONSOLE.print(
            f"[yellow]LPIPS is not computed: AlexNet weights are not at {weights} (torchmetrics would download "
            "them). PSNR and SSIM are computed; put that file there to get LPIPS too."
        )
        _said_lpips = True
    lpip_module.LearnedPerceptualImagePatchSimilarity = build  # type: ignore[assignment]
    try:
        yield
    finally:
        lpip_module.LearnedPerceptualImagePatchSimilarity = real  # type: ignore[assignment]


def drop_missing_lpips(model: nn.Module, metrics: dict) -> dict:
    """Remove LPIPS keys when LPIPS was not built (their NaN came from ``_MissingLPIPS``)."""
    if missing_lpips(getattr(model, "lpips", None)):
        return {k: v for k, v in metrics.items() if "lpips" not in k}
    return metrics


# --- checkpoints -----------------------------------------------------------------------------------


def _numpy_globals() -> list:
    """The numpy objects that nerfstudio checkpoints pickle: nerfstudio's learning-rate schedulers
    compute with numpy, so ``LambdaLR``'s saved ``_last_lr`` holds numpy float64 scalars.
    ``torch.serialization.get_unsafe_globals_in_checkpoint`` names ``numpy.core.multiarray.scalar``
    and ``numpy.dtype``; loading then also meets the float64 dtype's class (numpy >= 1.25 pickles
    ``numpy.dtypes.Float64DType``). Nothing else is allowed."""
    try:
        from numpy.core.multiarray import scalar  # numpy 1.x path, the name that checkpoints record
    except ImportError:  # pragma: no cover - numpy 2 moved it
        from numpy._core.multiarray import scalar  # type: ignore[no-redef]
    return [scalar, np.dtype, type(np.dtype(np.float64))]


def allow_checkpoint_globals() -> None:
    """Let ``torch.load``'s weights-only mode (default since torch 2.6) read nerfstudio checkpoints.

    ``ns-eval``, ``ns-export`` and ``ns-train --load-dir`` call ``torch.load`` without arguments;
    checkpoints of runs with a scheduler (sine-nerfacto) hold numpy scalars, which the weights-only
    unpickler refuses ("Unsupported global: GLOBAL numpy.core.multiarray.scalar"). This
    allow-lists exactly those numpy types instead of turning weights-only loading off. Called when one
    of our models is built, which every one of those commands does before loading the checkpoint.
    """
    add = getattr(torch.serialization, "add_safe_globals", None)
    if add is not None:  # torch < 2.4 has no weights-only default to satisfy
        add(_numpy_globals())


def model_in_unit_box(model_config, num_train_data: int = 1):
    """The model ``model_config`` (a nerfstudio ``ModelConfig``) builds on the scene box [-1, 1]^3, the box
    ``sine-fields data scene`` puts its object in, with no dataset: what counting a method's parameters,
    timing its field and testing it need. ``num_train_data`` sizes per-image embeddings where a model has
    them (nerfacto's appearance codes)."""
    from nerfstudio.data.scene_box import SceneBox

    box = SceneBox(aabb=torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]]))
    return model_config.setup(scene_box=box, num_train_data=num_train_data, metadata={})
