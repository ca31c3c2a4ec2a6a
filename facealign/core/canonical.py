"""Cropping faces to DAN's canonical frame, for evaluation and training.

DAN's first stage always starts from the mean shape S0 in the middle of an
image_size x image_size grayscale frame (paper section 3). A face enters
that frame through a similarity `to_canonical` (original pixels -> canonical
pixels): for evaluation the one that undoes S0 fitted to the face box; for
training the same with the initial shape randomly moved, turned, scaled and
mirrored (paper section 4), so the network learns to correct a bad start.
The transforms are computed here in numpy; the pixels come from
facealign.core.crop, the implementation the exported model runs too.

The accumulators at the end let a distributed job (the Beam Augment
component) compute S0 and the pixel normalisation from partial sums.
"""
from __future__ import annotations

import dataclasses
import hashlib

import numpy as np

from facealign.core import crop, geometry, landmarks68

# --- the frame ------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class CanonicalFrame:
    """S0 in canonical pixels ([N, 2] float32) and the side of the square frame."""

    mean_shape: np.ndarray
    size: int = 112

    @classmethod
    def from_mean_shape(cls, mean_shape, image_size: int = 112,
                        face_fraction: float = 0.5) -> CanonicalFrame:
        """Place a mean shape (any position and scale) in the frame, as
        geometry.canonical_mean_shape does."""
        return cls(geometry.canonical_mean_shape(mean_shape, image_size, face_fraction),
                   int(image_size))


@dataclasses.dataclass(frozen=True)
class CanonicalSample:
    """One face in the canonical frame.

    For a mirrored sample "original" means the horizontally flipped image:
    `to_original`, `original_landmarks` and `box` all refer to it, so
    ``apply_transform(to_original, landmarks) == original_landmarks`` holds
    for every sample.
    """

    image: np.ndarray               # uint8 [size, size]
    landmarks: np.ndarray           # float32 [N, 2], canonical pixels
    to_original: np.ndarray         # float64 [2, 3], canonical -> original pixels
    original_landmarks: np.ndarray  # float32 [N, 2], original pixels
    box: np.ndarray                 # float32 [4], (x0, y0, x1, y1) in original pixels
    mirrored: bool = False

    @property
    def to_canonical(self) -> np.ndarray:
        return geometry.invert_transform(self.to_original)


# --- mirroring -------------------------------------------------------------

def mirror_points(landmarks, box, width: int, permutation=None):
    """(landmarks, box) of a face in an image `width` pixels wide, flipped: x -> width - 1 - x.

    Landmarks are also re-indexed so that point i is again anatomical point i
    (otherwise the flipped left eye would carry the right eye's indices). The
    68-point permutation is the default; other markups must pass their own.
    """
    landmarks = np.asarray(landmarks)
    if permutation is None:
        permutation = landmarks68.mirror_permutation(len(landmarks))
    permutation = np.asarray(permutation)
    if sorted(permutation.tolist()) != list(range(len(landmarks))):
        raise ValueError(f"mirror permutation must reorder all {len(landmarks)} landmarks")
    last = width - 1
    flipped = landmarks.copy()
    flipped[:, 0] = last - flipped[:, 0]
    x0, y0, x1, y1 = np.asarray(box)
    mirrored_box = np.array([last - x1, y0, last - x0, y1], dtype=np.asarray(box).dtype)
    return flipped[permutation], mirrored_box


def mirror_face(image, landmarks, box, permutation=None):
    """(image, landmarks, box) flipped around the vertical axis (see mirror_points)."""
    image = np.asarray(image)
    flipped, mirrored_box = mirror_points(landmarks, box, image.shape[1], permutation)
    return np.ascontiguousarray(image[:, ::-1]), flipped, mirrored_box


def _samples(gray, landmarks, box, transforms, frame: CanonicalFrame,
             mirrored: bool) -> list[CanonicalSample]:
    """One sample per to_canonical transform, all cropped from `gray` in one warp."""
    to_originals = [geometry.invert_transform(t) for t in transforms]
    images = crop.crops(gray, to_originals, frame.size)
    landmarks = np.asarray(landmarks, np.float64)
    return [CanonicalSample(
        image=image,
        landmarks=geometry.apply_transform(to_canonical, landmarks).astype(np.float32),
        to_original=to_original,
        original_landmarks=landmarks.astype(np.float32),
        box=np.asarray(box, dtype=np.float32),
        mirrored=mirrored)
        for image, to_canonical, to_original in zip(images, transforms, to_originals)]


# --- evaluation crop ---------------------------------------------------------

def eval_transform(frame: CanonicalFrame, box) -> np.ndarray:
    """to_canonical for a detected face: S0 fitted to the box goes onto S0 (scale and
    translation only)."""
    return geometry.invert_transform(geometry.box_fit_transform(frame.mean_shape, box))


def eval_sample(image, landmarks, box, frame: CanonicalFrame) -> CanonicalSample:
    """The deterministic crop a deployed model sees (image: encoded bytes or a uint8 array)."""
    return _samples(crop.as_gray(image), landmarks, box, [eval_transform(frame, box)], frame,
                    False)[0]


# --- training augmentation -------------------------------------------------------

TRANSLATION_UNITS = ("face", "frame_pixels")
MIRROR_COPIES = ("half", "extra")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """Perturbations of the initial shape, after the official DAN code.

    translation_unit says what translation_sigma is a fraction of:
    - "face": the box-fitted initial shape's width (x) and height (y), so it
      means the same for every face size;
    - "frame_pixels": the official code's (ImageServer.GeneratePerturbations):
      S0's width and height in the canonical frame (about 56 px at 112),
      taken as pixels of the original image, so 0.2 is an offset of about
      11 px whatever the face's size: a few percent of a 300-W face.
    Scale factors are 1 + N(0, scale_sigma), clipped below at min_scale so a
    crop never flips or collapses.

    mirror_copies says how mirroring adds samples:
    - "half": `copies` samples per face, the last copies // 2 of them from the
      mirror image;
    - "extra": the official code's: `copies` from the face and `copies` more
      from its mirror image (2 x copies per face).
    """

    copies: int = 10
    mirror: bool = True
    translation_sigma: float = 0.2
    rotation_sigma_deg: float = 20.0
    scale_sigma: float = 0.25
    min_scale: float = 0.25
    seed: int = 0
    translation_unit: str = "frame_pixels"
    mirror_copies: str = "half"

    def __post_init__(self):
        if self.mirror_copies not in MIRROR_COPIES:
            raise ValueError(f"mirror_copies must be one of {MIRROR_COPIES}, "
                             f"got {self.mirror_copies!r}")
        if self.translation_unit not in TRANSLATION_UNITS:
            raise ValueError(f"translation_unit must be one of {TRANSLATION_UNITS}, "
                             f"got {self.translation_unit!r}")
        if self.copies < 1:
            raise ValueError(f"copies must be >= 1, got {self.copies}")
        if self.min_scale <= 0:
            raise ValueError(f"min_scale must be positive, got {self.min_scale}")
        if min(self.translation_sigma, self.rotation_sigma_deg, self.scale_sigma) < 0:
            raise ValueError("perturbation sigmas must be non-negative")

    @classmethod
    def from_settings(cls, settings) -> AugmentConfig:
        """The fields read by name from any mapping: the config's augment section dumped, or
        Augment's exec properties (mirror stored as 0/1). Missing or None ones take the
        defaults above, which are the augment section's, so there is one mapping to keep."""
        values = {}
        for field in dataclasses.fields(cls):
            value = settings.get(field.name)
            if value is not None:
                values[field.name] = type(field.default)(value)
        return cls(**values)

    @property
    def mirrored_copies(self) -> int:
        """Mirrored samples per face (none when mirroring is off)."""
        if not self.mirror:
            return 0
        return self.copies if self.mirror_copies == "extra" else self.copies // 2

    @property
    def samples_per_face(self) -> int:
        """Training samples each face gives: its own and its mirror image's."""
        own = self.copies if self.mirror_copies == "extra" else self.copies - self.mirrored_copies
        return own + self.mirrored_copies


@dataclasses.dataclass(frozen=True)
class Perturbation:
    """How the initial shape is moved before cropping."""

    angle: float        # radians, about the shape's centroid
    scale: float        # factor about the shape's centroid
    shift: np.ndarray   # [2], fractions of the initial shape's width and height


def _face_words(face_id) -> list[int]:
    data = face_id.encode("utf-8") if isinstance(face_id, str) else bytes(face_id)
    digest = hashlib.sha256(data).digest()
    return [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 32, 4)]


def perturbation_rng(seed: int, face_id, index: int) -> np.random.Generator:
    """A generator that depends only on (seed, face_id, index): same sample on every worker
    and rerun.

    The face id is hashed with SHA-256 (Python's hash() is salted per process).
    """
    entropy = [int(seed) % 2**64, *_face_words(face_id)]
    return np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=(int(index),)))


def draw_perturbation(rng: np.random.Generator, config: AugmentConfig) -> Perturbation:
    """Rotation, scale and translation, each normal around no change (paper section 4)."""
    angle = rng.normal(0.0, np.deg2rad(config.rotation_sigma_deg))
    scale = max(1.0 + rng.normal(0.0, config.scale_sigma), config.min_scale)
    shift = rng.normal(0.0, config.translation_sigma, size=2)
    return Perturbation(float(angle), float(scale), shift)


def perturbed_transform(frame: CanonicalFrame, box, perturbation: Perturbation,
                        translation_unit: str = "face") -> np.ndarray:
    """to_canonical taking the perturbed initial shape onto S0 (AugmentConfig says the units).

    The initial shape is S0 fitted to the box, turned and scaled about its
    centroid, then shifted; the similarity taking it onto S0 is exactly the
    inverse of that chain, so it is computed as such.
    """
    fit = geometry.box_fit_transform(frame.mean_shape, box)
    initial = geometry.apply_transform(fit, frame.mean_shape.astype(np.float64))
    x0, y0, x1, y1 = geometry.bounding_box(initial if translation_unit == "face"
                                           else frame.mean_shape)
    move = geometry.similarity_about(initial.mean(axis=0), perturbation.scale, perturbation.angle,
                                     perturbation.shift * np.array([x1 - x0, y1 - y0]))
    return geometry.invert_transform(geometry.compose(move, fit))


def training_samples(image, landmarks, box, face_id, frame: CanonicalFrame,
                     config: AugmentConfig = AugmentConfig(),
                     permutation=None) -> list[CanonicalSample]:
    """`config.samples_per_face` randomly perturbed crops of one face, reproducible from
    (seed, face_id).

    The image as it is gives the first samples, its mirror image (when
    mirroring is on) the rest: config.mirror_copies says how many of each.
    Sample k always uses the generator of index k, so changing `copies` keeps
    the earlier samples.
    """
    gray = crop.as_gray(image)
    landmarks = np.asarray(landmarks, dtype=np.float32)
    box = np.asarray(box, dtype=np.float64)
    faces = [(gray, landmarks, box, False)]
    if config.mirrored_copies:
        faces.append((crop.mirror(gray),
                      *mirror_points(landmarks, box, int(gray.shape[1]), permutation), True))
    counts = [config.samples_per_face - config.mirrored_copies, config.mirrored_copies]
    samples = []
    index = 0
    for (face_gray, face_landmarks, face_box, mirrored), count in zip(faces, counts):
        transforms = []
        for _ in range(count):
            perturbation = draw_perturbation(perturbation_rng(config.seed, face_id, index), config)
            transforms.append(perturbed_transform(frame, face_box, perturbation,
                                                  config.translation_unit))
            index += 1
        if transforms:
            samples.extend(_samples(face_gray, face_landmarks, face_box, transforms, frame,
                                    mirrored))
    return samples


# --- distributed statistics --------------------------------------------------

class PixelStats:
    """Per-pixel mean and standard deviation of canonical images, mergeable (Chan et al.'s
    parallel variance).

    Shaped for a Beam CombineFn: ``add`` an image, ``merge`` partial results,
    ``extract`` at the end. Population std, as the official code's np.std.
    """

    def __init__(self):
        self.count = 0
        self.mean = None   # float64 [H, W]
        self.m2 = None     # float64 [H, W], sum of squared deviations

    def add(self, image) -> PixelStats:
        return self.add_batch(np.asarray(image)[None])

    def add_batch(self, images) -> PixelStats:
        images = np.asarray(images, dtype=np.float64)
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        if images.ndim != 3:
            raise ValueError(f"images must be [B, H, W] or [B, H, W, 1], got shape {images.shape}")
        if len(images) == 0:
            return self
        batch = PixelStats()
        batch.count = len(images)
        batch.mean = images.mean(axis=0)
        batch.m2 = ((images - batch.mean) ** 2).sum(axis=0)
        return self.merge(batch)

    def merge(self, other: PixelStats) -> PixelStats:
        """Fold `other` into this accumulator (in place) and return it."""
        if other.count == 0:
            return self
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean.copy(), other.m2.copy()
            return self
        if other.mean.shape != self.mean.shape:
            raise ValueError(f"cannot merge image statistics of shapes {self.mean.shape} and "
                             f"{other.mean.shape}")
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean = self.mean + delta * (other.count / total)
        self.m2 = self.m2 + other.m2 + delta ** 2 * (self.count * other.count / total)
        self.count = total
        return self

    def extract(self, min_std: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std) float32 [H, W]; std is at least min_std grey levels so normalising never
        divides by ~0."""
        if self.count == 0:
            raise ValueError("no images were added")
        std = np.sqrt(self.m2 / self.count)
        return self.mean.astype(np.float32), np.maximum(std, min_std).astype(np.float32)


class ProcrustesMeanAccumulator:
    """The generalised Procrustes mean shape from mergeable sums.

    With a shape as complex vector z (x + iy), centred and unit-norm as u,
    aligning it to a unit mean m by a similarity gives u (u^H m); the GPA
    iteration therefore is power iteration on C = sum u u^H and converges to
    C's leading eigenvector (Kent 1994). C is a plain sum, so partial
    accumulators merge by addition and the result equals
    geometry.procrustes_mean of all shapes, rotation pinned the same way
    (towards the plain average of the normalised shapes, kept as well).
    """

    def __init__(self):
        self.count = 0
        self.outer = None   # complex128 [N, N], sum of u u^H
        self.total = None   # complex128 [N], sum of u

    def add(self, shape) -> ProcrustesMeanAccumulator:
        u = geometry.normalize_shape(shape)
        u = u[:, 0] + 1j * u[:, 1]
        other = ProcrustesMeanAccumulator()
        other.count, other.outer, other.total = 1, np.outer(u, u.conj()), u
        return self.merge(other)

    def merge(self, other: ProcrustesMeanAccumulator) -> ProcrustesMeanAccumulator:
        """Fold `other` into this accumulator (in place) and return it."""
        if other.count == 0:
            return self
        if self.count == 0:
            self.count, self.outer, self.total = other.count, other.outer.copy(), other.total.copy()
            return self
        if other.outer.shape != self.outer.shape:
            raise ValueError(f"cannot merge shapes of {len(self.total)} and {len(other.total)} "
                             "landmarks")
        self.count += other.count
        self.outer = self.outer + other.outer
        self.total = self.total + other.total
        return self

    def extract(self) -> np.ndarray:
        """The mean shape [N, 2] float64, centroid at the origin, unit norm."""
        if self.count == 0:
            raise ValueError("no shapes were added")
        _, vectors = np.linalg.eigh(self.outer)
        mean = vectors[:, -1]
        # mean^H total; ~0 only if the shapes' rotations cancel out
        overlap = np.vdot(mean, self.total)
        if abs(overlap) > 1e-9 * self.count:
            mean = mean * (overlap / abs(overlap))
        mean = mean - mean.mean()
        return np.stack([mean.real, mean.imag], axis=1) / np.linalg.norm(mean)
