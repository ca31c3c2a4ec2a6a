"""facealign/data."""
