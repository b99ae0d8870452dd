"""ratedist.bounds."""
