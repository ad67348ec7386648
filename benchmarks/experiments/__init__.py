"""Small, CPU-sized experiment builders shared by ``benchmarks/vit.py`` and ``benchmarks/lora.py``.

They live beside the benchmarks, not in the installed library: only the benchmarks and their tests
use them, and they pull in timm, scikit-learn, transformers and PEFT. The benchmark scripts import
them as ``experiments`` (a script's folder is first on ``sys.path``); tests/benchmarks/conftest.py
does the same for the tests.
"""
