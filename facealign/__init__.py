"""facealign: face alignment (DAN, AAN) as a TFX pipeline.

``facealign.load(model)`` (facealign/api.py) is the Python API; it is imported
on first use, so ``import facealign.config`` and the CLI's start stay free of
TensorFlow and OpenCV.
"""
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load":
        from facealign.api import load

        return load
    raise AttributeError(f"module 'facealign' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), "load"])
