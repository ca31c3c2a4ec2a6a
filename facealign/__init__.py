"""facealign: face alignment (DAN, AAN) as a TFX pipeline; this package is its top layer.

``facealign.load(model)`` (facealign/api.py) is the Python API and
``facealign`` on the command line (facealign/cli.py) the CLI; both sit above
everything else. The core they and every other layer build on is the
subpackage ``facealign.core``. The API is imported on first use, so importing
a core module (which runs this file first) and the CLI's start stay free of
TensorFlow and OpenCV.
"""
__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load":
        from facealign import installation

        installation.check_packages()
        from facealign.api import load

        globals()["load"] = load   # checked and imported once; later look-ups skip this
        return load
    raise AttributeError(f"module 'facealign' has no attribute {name!r}")


def __dir__():
    return sorted({*globals(), "load"})
