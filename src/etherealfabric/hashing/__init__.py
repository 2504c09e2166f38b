"""hashing layer."""
