"""Augment: canonical-frame crops, 10x training augmentation, mean shape and pixel statistics."""
