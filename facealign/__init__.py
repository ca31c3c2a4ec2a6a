"""facealign: face alignment (DAN, AAN) as a TFX pipeline."""
__version__ = "0.1.0"
