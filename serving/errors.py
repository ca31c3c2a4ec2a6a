"""The errors serving raises for input its caller can fix.

They are ValueErrors that name the input (a path, a URL, a box), so a library
caller can catch them like any bad argument, and the CLI prints them as one
line (facealign/cli.py) without knowing which command raised them. A missing
face detector is a problem of the machine, not of the input: a RuntimeError
(DetectorUnavailable); a server's failures are client.ServingErrors.
"""


class InputError(ValueError):
    """An input that cannot be used; the message names it."""


class ModelError(InputError):
    """A model path or URL that cannot be opened, or a model that refused the input."""


class ImageError(InputError):
    """An image that cannot be read or decoded, or an array that is not an image."""


class BoxError(InputError):
    """Face boxes that are not [4] or [K, 4] finite x0, y0, x1, y1 with x1 > x0, y1 > y0."""


class VideoError(InputError):
    """A video or frame folder that cannot be read, or an output that cannot be written."""


class DetectorUnavailable(RuntimeError):
    """No usable face detector model could be found (detector.py)."""
