"""The core: configuration, data readers, geometry, the crop, metrics, the model's files.

Everything above it (trainer, components, pipeline, serving, the CLI and API)
imports from here; nothing here imports above it, and nothing here needs
TensorFlow at import time (crop and metrics load it when first asked).
"""
