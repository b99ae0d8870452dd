"""ratedist.validate."""
