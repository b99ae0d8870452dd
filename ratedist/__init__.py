"""ratedist: rate–distortion analysis of gradient compression in distributed SGD."""

__version__ = "0.1.0"
