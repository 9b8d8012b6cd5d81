"""merge-to-learn: the library behind the workflow's step programs."""

__version__ = "0.1.0"
