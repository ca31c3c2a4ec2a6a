"""Is an image file usable? Checked once per image, as cheaply as is still reliable.

A truncated or corrupt file must be found here, not halfway through a Beam job.
JPEG is decoded in draft mode (1/8 scale: the entropy-coded data is still read
to the end, so truncation is caught, but the inverse DCT is mostly skipped);
PNG is verified (every chunk's CRC and the closing IEND); other formats
(PPM, BMP) are small to decode and are fully loaded.
"""
from __future__ import annotations

import pathlib
import warnings

from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".ppm", ".bmp")  # preference order


class ImageProblem(ValueError):
    """The image cannot be used; the message is the reason."""


def is_image_name(path: pathlib.Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def checked_image_size(path: pathlib.Path) -> tuple[int, int]:
    """(width, height) of an image that decodes; raises ImageProblem otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                size = image.size
                if image.format == "JPEG":
                    image.draft(image.mode, (max(1, size[0] // 8), max(1, size[1] // 8)))
                    image.load()
                elif image.format == "PNG":
                    image.verify()
                else:
                    image.load()
    except FileNotFoundError:
        raise ImageProblem("image file not found") from None
    except Image.UnidentifiedImageError:
        raise ImageProblem("not a readable image (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageProblem(f"image cannot be decoded ({exc})") from None
    if size[0] < 1 or size[1] < 1:
        raise ImageProblem(f"image has no pixels ({size[0]}x{size[1]})")
    return size
