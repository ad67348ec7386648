"""benchmarks/layers.py runs end to end in quick mode and writes the promised keys (not the numbers)."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_quick_layers_benchmark_writes_json(tmp_path):
    out = tmp_path / "layers.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "layers.py"), "--quick", "--output", str(out)],
                   check=True, capture_output=True, text=True, timeout=600)
    result = json.loads(out.read_text())
    assert result["matmul_gflops"] > 0
    kinds = {row["kind"] for row in result["train"]}
    assert kinds == {"dense", "lowrank", "sine"}
    by_kind = {row["kind"]: row for row in result["train"]}
    # sine and plain low-rank share the parameter count; both far below dense
    assert by_kind["sine"]["parameters"] == by_kind["lowrank"]["parameters"] < by_kind["dense"]["parameters"]
    # the custom backward keeps no more activation memory than dense
    assert by_kind["sine"]["saved_for_backward_bytes"] <= 1.05 * by_kind["dense"]["saved_for_backward_bytes"]
    assert result["field_inference"]["merged_gflops"] > 0


def test_bad_device_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "layers.py"), "--device", "nonsense"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: --device 'nonsense'") and len(result.stderr.strip().splitlines()) == 1
