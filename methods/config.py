"""nerfstudio entry points (``[project.entry-points."nerfstudio.method_configs"]``).

nerfstudio loads every plugin's entry point without a guard, so an exception here would break
``ns-train`` for every method. Each spec is therefore built inside a ``try``: if ours cannot be
built (a broken optional dependency, say), the entry point holds a small object that is not a
``MethodSpecification``; nerfstudio prints a one-line warning naming it and the reason, and every
other method keeps working.
"""

from __future__ import annotations

__all__ = ["lowrank_nerf", "lowrank_nerf_lite", "sine_nerf", "sine_nerf_lite", "sine_nerfacto"]


class Unavailable:
    """Placeholder for a method that could not be built; its repr is what nerfstudio prints."""

    def __init__(self, name: str, error: BaseException) -> None:
        self.name = name
        self.reason = f"{type(error).__name__}: {error}".splitlines()[0]

    def __repr__(self) -> str:
        return f"<{self.name} unavailable ({self.reason})>"


def _spec(name: str):
    try:
        from nerfstudio.plugins.types import MethodSpecification

        if name in ("sine-nerf", "lowrank-nerf"):
            from sine_fields.methods.sine_nerf import derive, nerf_trainer_config

            base = nerf_trainer_config()
            if name == "sine-nerf":
                return MethodSpecification(config=base, description="vanilla NeRF with sine low-rank field MLPs")
            return MethodSpecification(
                config=derive(base, "lowrank-nerf", linear="lowrank"),
                description="vanilla NeRF with plain low-rank field MLPs (the sine-nerf baseline)",
            )
        if name in ("sine-nerf-lite", "lowrank-nerf-lite"):
            from sine_fields.methods.sine_nerf import derive
            from sine_fields.methods.sine_nerf_lite import nerf_lite_trainer_config

            base = nerf_lite_trainer_config()
            if name == "sine-nerf-lite":
                return MethodSpecification(
                    config=base, description="sine-nerf, a recipe that converges on a CPU in minutes (small object scenes)"
                )
            return MethodSpecification(
                config=derive(base, "lowrank-nerf-lite", linear="lowrank"),
                description="lowrank-nerf with the sine-nerf-lite recipe (its plain low-rank baseline)",
            )
        from sine_fields.methods.sine_nerfacto import nerfacto_trainer_config

        return MethodSpecification(
            config=nerfacto_trainer_config(), description="nerfacto with sine low-rank MLPs (torch MLPs)"
        )
    except Exception as error:  # noqa: BLE001 - see the module docstring: never break ns-train
        return Unavailable(name, error)


sine_nerf = _spec("sine-nerf")
lowrank_nerf = _spec("lowrank-nerf")
sine_nerfacto = _spec("sine-nerfacto")
sine_nerf_lite = _spec("sine-nerf-lite")
lowrank_nerf_lite = _spec("lowrank-nerf-lite")
