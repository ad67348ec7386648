"""benchmarks/field_precision.py: a --quick run end to end, and its bad input."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "field_precision.py"


def test_quick_run_times_both_precisions_and_bounds_the_rounding(tmp_path):
    output = tmp_path / "precision.json"
    done = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--output", str(output)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(output.read_text())
    cases = [row["case"] for row in data["rows"]]
    assert cases == ["product 32768x256 @ 256x256", "sine field forward + backward", "dense field forward + backward"]
    for row in data["rows"]:
        assert row["float32_seconds"] > 0 and row["bfloat16_seconds"] > 0
        assert abs(row["speedup"] - row["float32_seconds"] / row["bfloat16_seconds"]) < 1e-9
    # bfloat16 keeps 8 significant bits: rounded products, not a different field
    assert 0 < data["bfloat16_max_rgb_error"] < 0.05
    assert 0 < data["bfloat16_max_relative_density_error"] < 0.2
    assert data["machine"]["bfloat16_units"] in ("AMX tiles", "AVX512-BF16", None)
    assert "| sine field forward + backward |" in done.stdout


def test_bad_counts_are_one_line_and_exit_2(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT), "--samples", "0", "--output", str(tmp_path / "x.json")],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--samples" in done.stderr
    assert not (tmp_path / "x.json").exists()
