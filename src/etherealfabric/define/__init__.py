"""define layer."""
