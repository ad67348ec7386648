"""Many shape fits at once: one fit per mesh as a Ray task, resumable, with a summary table.

Each mesh gets its own run folder under the output folder (``cgal:armadillo`` -> ``cgal-armadillo``),
fitted by the same ``ShapeRun.fit`` as ``sine-fields fit`` and then packed (``pack_run``). A run that
finished with the same configuration is skipped; an interrupted one resumes from its checkpoint (both
are ``ShapeRun.fit``'s own behaviour). A mesh that fails is a row with its one-line reason; the others
go on. ``summary.md`` and ``summary.csv`` list every mesh's metrics and packed sizes.

Ray is optional (the ``scale`` extra): without it ``fit_many`` raises a ``UserError`` saying how to
install it. With no address Ray starts a local cluster of this machine's cores. ``executor="local"`` runs
the same task function one fit after another in this process, for a machine where Ray's cluster cannot
start (Ray's raylet gives its agents a fixed 15 s to start, which a heavily loaded machine can miss).
"""

from __future__ import annotations

import csv
import io
import re
import time
from dataclasses import dataclass, replace
from pathlib import Path

from sine_fields.errors import UserError
from sine_fields.shapes.config import FitConfig

__all__ = ["ManyResult", "SUMMARY_COLUMNS", "fit_many", "mesh_folders", "read_mesh_list", "start_ray", "summary_csv",
           "summary_markdown"]

SUMMARY_COLUMNS = ("mesh", "run", "status", "iou", "iou_near_surface", "chamfer_l1", "normal_consistency", "fscore",
                   "num_parameters", "bytes_16", "bytes_8", "fit_seconds", "reason")
INSTALL_HINT = "install it with `pip install -e '.[scale]'` (or `pip install ray`)"


def read_mesh_list(path: Path) -> list[str]:
    """Mesh sources from a text file: one per line; blank lines and ``#`` comments are ignored."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except FileNotFoundError:
        raise UserError(f"--list {path} does not exist") from None
    except (IsADirectoryError, UnicodeDecodeError) as error:
        raise UserError(f"--list {path}: not a text file of mesh names ({type(error).__name__})") from None
    meshes = [line.split("#", 1)[0].strip() for line in lines]
    return [mesh for mesh in meshes if mesh]


def _slug(mesh: str) -> str:
    name = Path(mesh).stem if ("/" in mesh or "." in Path(mesh).name) and not mesh.startswith("cgal:") else mesh
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "mesh"


def mesh_folders(meshes: list[str]) -> dict[str, str]:
    """A distinct run-folder name per mesh (``cgal:camel`` -> ``cgal-camel``; files by their stem,
    numbered when two stems clash); the same list always gives the same names, so a rerun resumes."""
    if len(set(meshes)) != len(meshes):
        repeated = sorted({m for m in meshes if meshes.count(m) > 1})
        raise UserError(f"mesh listed more than once: {', '.join(repeated)}")
    names: dict[str, str] = {}
    used: set[str] = set()
    for mesh in meshes:
        base = name = _slug(mesh)
        index = 2
        while name in used:
            name, index = f"{base}-{index}", index + 1
        used.add(name)
        names[mesh] = name
    return names


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def fit_one(mesh: str, folder: str, config: dict, extract: dict, bits: tuple[int, ...], finetune_steps: int,
            device: str, threads: int) -> dict:
    """Fit (or resume, or skip) one mesh and pack it; a summary row. Runs inside a Ray worker."""
    import torch

    from sine_fields.shapes.config import ExtractConfig
    from sine_fields.shapes.pack_commands import pack_run
    from sine_fields.shapes.run import RunPaths, ShapeRun

    torch.set_num_threads(max(1, threads))
    row: dict = {"mesh": mesh, "run": folder, "status": "failed", "reason": ""}
    start = time.perf_counter()
    try:
        fit_config = FitConfig.from_dict({"mesh": mesh, **config}, ExtractConfig(**extract))
        paths = RunPaths(Path(folder))
        finished = paths.metrics.exists() and ShapeRun.open(folder).fit_config.same_fit(fit_config)
        run = ShapeRun.open(folder) if finished else ShapeRun.fit(folder, fit_config, device=device, progress=False)
        metrics = run.metrics
        for key in SUMMARY_COLUMNS:
            if key in metrics:
                row[key] = metrics[key]
        row["fit_seconds"] = metrics.get("timings", {}).get("fit_seconds")
        for b in bits:
            packed = Path(folder) / f"shape-{b}bit.sfz"
            if not packed.exists():  # packing is part of the run: a rerun does not redo it
                from sine_fields.io import atomic_write_bytes

                atomic_write_bytes(packed, pack_run(Path(folder), b, finetune_steps if b == 8 else 0, device))
            row[f"bytes_{b}"] = packed.stat().st_size
        row["status"] = "skipped (finished before)" if finished else "ok"
    except UserError as error:
        row["reason"] = _one_line(error)
    except Exception as error:  # noqa: BLE001 - one mesh's failure must not stop the others; reported per row
        row["reason"] = f"{type(error).__name__}: {_one_line(error)}"
    row["seconds"] = round(time.perf_counter() - start, 2)
    return row


@dataclass
class ManyResult:
    rows: list[dict]
    summary_md: Path
    summary_csv: Path

    @property
    def failed(self) -> list[dict]:
        return [row for row in self.rows if row["status"] == "failed"]


def _format(value) -> str:
    if value is None or value == "":
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def summary_markdown(rows: list[dict]) -> str:
    header = "| " + " | ".join(SUMMARY_COLUMNS) + " |"
    rule = "|" + "|".join("---" for _ in SUMMARY_COLUMNS) + "|"
    lines = [header, rule]
    for row in rows:
        lines.append("| " + " | ".join(_format(row.get(key)).replace("|", "\\|") for key in SUMMARY_COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def summary_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: row.get(key, "") for key in SUMMARY_COLUMNS})
    return buffer.getvalue()


def start_ray(address: str | None = None, cpus: int | None = None):
    """``(ray, started)``: Ray, joined to ``address`` or to a new local cluster (``started`` True: shut it
    down when done); an already initialised Ray is used as it is."""
    try:
        import ray
    except ImportError:
        raise UserError(f"fit-many runs each fit as a Ray task, and Ray is not installed: {INSTALL_HINT}") from None
    if ray.is_initialized():
        return ray, False
    try:
        if address:
            ray.init(address=address, log_to_driver=False, include_dashboard=False)
        else:
            ray.init(num_cpus=cpus, log_to_driver=False, include_dashboard=False)
    except (ConnectionError, RuntimeError, ValueError) as error:
        raise UserError(f"--address {address}: cannot join that Ray cluster ({_one_line(error)})") from None
    except Exception as error:  # noqa: BLE001 - Ray raises a bare Exception when its local node does not start
        raise UserError(f"Ray's local cluster did not start ({_one_line(error)}); retry, join a running cluster "
                        "with --address, or run the fits in this process with --executor local") from None
    return ray, True


def _run_in_process(calls: dict[str, tuple], on_done) -> None:
    """The same tasks one after another in this process (``executor="local"``): no cluster to start."""
    for mesh, arguments in calls.items():
        on_done(mesh, fit_one(*arguments))


def _run_on_ray(ray, calls: dict[str, tuple], cpus_per_fit: int, on_done) -> None:
    task = ray.remote(num_cpus=cpus_per_fit, max_retries=0)(fit_one)
    pending = {task.remote(*arguments): mesh for mesh, arguments in calls.items()}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            mesh = pending.pop(ref)
            try:
                row = ray.get(ref)
            except Exception as error:  # noqa: BLE001 - a worker that died: its row says why
                row = {"mesh": mesh, "run": calls[mesh][1], "status": "failed", "reason": f"Ray task failed: {_one_line(error)}"}
            on_done(mesh, row)


def fit_many(meshes: list[str], output: Path, config: FitConfig, address: str | None = None, cpus_per_fit: int = 1,
             bits: tuple[int, ...] = (16,), finetune_steps: int = 0, device: str = "cpu", progress: bool = True,
             executor: str = "ray") -> ManyResult:
    """Fit every mesh in ``meshes`` with ``config`` (its ``mesh`` is ignored), as Ray tasks (``executor="ray"``)
    or one after another in this process (``"local"``); returns the summary rows (also written to
    OUTPUT/summary.md and OUTPUT/summary.csv)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from sine_fields.io import atomic_write_text

    if not meshes:
        raise UserError("no meshes given: pass mesh names or files, or --list FILE")
    if cpus_per_fit < 1:
        raise UserError(f"--cpus-per-fit must be >= 1, got {cpus_per_fit}")
    config = replace(config, mesh=meshes[0])
    config.check()  # bad options fail before any cluster starts
    folders = mesh_folders(meshes)
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output} is a file; expected a folder")
    output.mkdir(parents=True, exist_ok=True)
    if executor not in ("ray", "local"):
        raise UserError(f"--executor must be ray or local, got {executor!r}")
    shared = config.to_dict()
    shared.pop("mesh")
    extract = config.extract.to_dict()
    calls = {mesh: (mesh, str(output / folders[mesh]), shared, extract, tuple(bits), finetune_steps, device, cpus_per_fit)
             for mesh in meshes}
    rows: dict[str, dict] = {}
    # markup off: rich would draw "cgal:anchor: ok" as an anchor emoji.
    columns = (TextColumn("fit-many"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}", markup=False),
               TimeElapsedColumn())
    with Progress(*columns, disable=not progress) as bar:
        progress_task = bar.add_task("fits", total=len(meshes), last="")

        def on_done(mesh: str, row: dict) -> None:
            rows[mesh] = row
            bar.update(progress_task, advance=1, last=f"{mesh}: {row['status']}")

        if executor == "local":
            _run_in_process(calls, on_done)
        else:
            ray, started = start_ray(address)
            try:
                _run_on_ray(ray, calls, cpus_per_fit, on_done)
            finally:
                if started:
                    ray.shutdown()
    ordered = [rows[mesh] for mesh in meshes]
    md = atomic_write_text(output / "summary.md", summary_markdown(ordered))
    table = atomic_write_text(output / "summary.csv", summary_csv(ordered))
    return ManyResult(ordered, md, table)
