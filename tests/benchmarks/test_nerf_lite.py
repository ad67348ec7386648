"""benchmarks/nerf_lite.py: the convergence gain, the table, and a --quick run of the real ns-train and
ns-eval commands end to end (16 px Duck, 20 iterations)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "nerf_lite.py"


@pytest.fixture(scope="module")
def lite():
    spec = importlib.util.spec_from_file_location("benchmark_nerf_lite_under_test", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_last_quarter_gain_reads_the_point_nearest_three_quarters(lite):
    curve = [[100, 15.0], [200, 18.0], [300, 20.0], [400, 21.0]]
    assert lite.last_quarter_gain(curve, 400) == pytest.approx(1.0)  # 21 - PSNR at step 300
    assert lite.last_quarter_gain([[400, 21.0]], 400) is None


def test_cpu_shares_split_the_counters_into_busy_idle_and_stolen(lite):
    # /proc/stat order: user nice system idle iowait irq softirq steal (guest columns after)
    before = [100, 0, 50, 1000, 0, 0, 0, 0, 0, 0]
    after = [400, 0, 150, 1400, 100, 0, 0, 200, 0, 0]  # +300 user +100 system +400 idle +100 iowait +200 steal
    assert lite._cpu_shares(before, after) == {"busy": 0.364, "idle": 0.455, "steal": 0.182}
    assert lite._cpu_shares(None, after) is None


def test_quick_run_end_to_end(tmp_path):
    output = tmp_path / "lite.json"
    command = [sys.executable, str(SCRIPT), "--quick", "--output", str(output)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(output.read_text())
    (run,) = data["runs"]
    assert run["linear"] == "sine" and run["iterations"] == 20
    # the dense twin is the same config with dense layers: the sine field is a small fraction of it
    assert 0.04 <= run["parameters"]["model"] / run["parameters"]["dense_twin"] <= 0.065
    assert 5.0 < run["results"]["psnr"] < 60.0
    steps = [step for step, _ in run["psnr_curve"]]
    assert steps == sorted(steps) and steps[-1] == 20 and len(steps) >= 2  # logged during training + ns-eval's
    assert run["last_quarter_gain_db"] is not None
    assert run["ns_train_wall_seconds"] > 0 and len(run["load_average_1min_before_and_after"]) == 2
    shares = run["cpu_time_shares_during_training"]
    assert shares["busy"] > 0 and sum(shares.values()) == pytest.approx(1.0, abs=0.01)
    assert run["precision"] == "auto" and isinstance(data["machine"]["bfloat16_tiles"], bool)
    assert "| sine-nerf-lite | sine k = 5, omega 100 |" in done.stdout
    # the same command again: the finished run is kept, not redone
    again = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert again.returncode == 0 and "already in" in again.stdout
    # other settings into the same file: refused in one line, exit 2
    other = subprocess.run([sys.executable, str(SCRIPT), "--output", str(output), "--views", "9"],
                           capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert other.returncode == 2 and other.stderr.count("\n") == 1 and "--overwrite" in other.stderr
