"""Subscribers to the run-event stream: logging (and, later, progress and metrics)."""
