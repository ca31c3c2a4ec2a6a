"""DriftCheck: a span's raw faces against the previous span's, by TFDV's drift comparators."""
