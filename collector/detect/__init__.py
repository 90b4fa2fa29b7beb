"""Detection: statistical detectors (``stats``), picked by name from ``DETECTORS``."""
