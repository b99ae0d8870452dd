"""ratedist.symbolic."""
