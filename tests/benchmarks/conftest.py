"""The benchmarks' shared experiment builders (benchmarks/experiments/) are not installed: put their
folder on sys.path as a benchmark script has it, so tests import them as ``experiments``."""

import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.insert(0, str(BENCHMARKS))
