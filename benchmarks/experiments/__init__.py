"""Small, CPU-sized experiment builders shared by ``benchmarks/vit.py`` and ``benchmarks/lora.py``.

Nothing here is imported by ``import sine_fields``: these modules pull in timm, scikit-learn,
transformers and PEFT, which the core must not pay for.
"""
