"""The config tree of a shape fit: mesh, field, train, extract.

``FitConfig`` is what a run folder's ``config.json`` records (``to_dict`` / ``from_dict`` are its one
serialiser), what the ``sine-fields fit`` command turns into flags, and what the benchmarks build.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field as default
from typing import Literal

from sine_fields.errors import UserError
from sine_fields.shapes.field import FieldConfig
from sine_fields.shapes.fit import TrainConfig

__all__ = ["ExtractConfig", "ExtractMethod", "FitConfig"]

ExtractMethod = Literal["dense", "coarse-to-fine"]


@dataclass
class ExtractConfig:
    """How the mesh is extracted from the field."""

    resolution: int = 256
    """marching-cubes grid cells per axis (coarse-to-fine: 32 * 2^m)."""
    method: ExtractMethod = "coarse-to-fine"
    """dense (every grid point) or coarse-to-fine (only near the surface)."""

    def check(self) -> None:
        """A resolution the method cannot reach is a ``UserError`` (checked before any training)."""
        from sine_fields.shapes.extract import check_resolution

        try:
            check_resolution(self.resolution, self.method)
        except ValueError as error:
            raise UserError(f"--resolution: {error}") from None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class FitConfig:
    """One fit: which mesh, which field, how it is trained and how its mesh is extracted."""

    mesh: str
    """`bunny`, `cgal:<name>` (e.g. cgal:armadillo) or a mesh file (OFF, PLY, OBJ, STL, GLB)."""
    field: FieldConfig = default(default_factory=FieldConfig)
    train: TrainConfig = default(default_factory=TrainConfig)
    extract: ExtractConfig = default(default_factory=ExtractConfig)

    def check(self) -> None:
        """Every option a user can get wrong, checked before anything is loaded or written."""
        self.field.check()
        self.train.check()
        self.extract.check()

    def to_dict(self) -> dict:
        """What ``config.json`` records of the fit (the extraction is in ``extraction.json``)."""
        return {"mesh": self.mesh, "field": self.field.to_dict(), "train": self.train.to_dict()}

    @classmethod
    def from_dict(cls, data: dict, extract: ExtractConfig | None = None) -> "FitConfig":
        return cls(str(data["mesh"]), FieldConfig.from_dict(data["field"]), TrainConfig(**data["train"]),
                   extract or ExtractConfig())

    def same_fit(self, other: "FitConfig") -> bool:
        """True when both describe the same trained field (same mesh, field and training)."""
        return self.to_dict() == other.to_dict()
