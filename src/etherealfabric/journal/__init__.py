"""journal layer."""
