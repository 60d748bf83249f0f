"""ONNX deployment: export a SERA model with its tokenizer data
(:mod:`sera_mm.deployment.export`, needs PyTorch) and run the exported model
with ONNX Runtime only (:mod:`sera_mm.deployment.onnx_runtime`, no torch).

This package imports nothing itself, so that the torch-free runtime can be
loaded without PyTorch (see ``tools/deployment/onnx_infer.py``).
"""
