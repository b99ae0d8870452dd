"""ratedist.sim."""
