"""Feature names of the two tf.Example kinds the pipeline writes.

Raw faces (ExampleGen): one real annotated face as read from a dataset.
Canonical samples (Augment): one face cropped to the canonical frame, the
input the models train and are evaluated on. Both sides (writers in the Beam
components, parsers in the trainer and evaluator) import these names so the
format is defined once.
"""

# --- raw faces (ExampleGen output) ---------------------------------------
RAW_IMAGE = "image/encoded"          # bytes: the original file's bytes (JPEG/PNG/PPM...)
RAW_IMAGE_PATH = "image/path"        # bytes: path relative to the source root
RAW_LANDMARKS = "landmarks"          # float [2N]: x0, y0, x1, y1, ... 0-based pixels
RAW_NUM_LANDMARKS = "num_landmarks"  # int [1]
RAW_BOX = "box"                      # float [4]: x0, y0, x1, y1, 0-based pixels
RAW_BOX_SOURCE = "box_source"        # bytes: "detector" or "landmarks"
RAW_DATASET = "dataset"              # bytes: the source's name in pipeline.yaml
RAW_SUBSET = "subset"                # bytes: e.g. "afw", "helen/trainset"
RAW_FACE_ID = "face_id"              # bytes: unique per face, e.g. "demo:afw/123_1"
# Described by the statistics only: what the drift check compares between spans
RAW_BOX_WIDTH = "box_width"          # float [1]: pixels
RAW_BOX_HEIGHT = "box_height"        # float [1]: pixels
RAW_IMAGE_WIDTH = "image_width"      # int [1]: pixels
RAW_IMAGE_HEIGHT = "image_height"    # int [1]: pixels
RAW_IMAGE_CHANNELS = "image_channels"  # int [1]: 1 grey, 3 colour, 4 with alpha
RAW_LANDMARK_SPREAD = "landmark_spread"  # float [1]: RMS distance from the centroid / box side

# --- canonical samples (Augment output) -----------------------------------
IMAGE = "image"                      # bytes: raw uint8 grayscale, size*size, row-major
IMAGE_SIZE = "image_size"            # int [1]
LANDMARKS = "landmarks"              # float [2N]: canonical-frame pixels, x0, y0, ...
TO_ORIGINAL = "to_original"          # float [6]: 2x3 affine, canonical -> original pixels
ORIGINAL_LANDMARKS = "original_landmarks"  # float [2N]: ground truth, original pixels
BOX = "box"                          # float [4]: the face box in the original image
FACE_ID = "face_id"                  # bytes
DATASET = "dataset"                  # bytes
SUBSET = "subset"                    # bytes
MIRRORED = "mirrored"                # int [1]: 1 if the sample is a mirrored copy
