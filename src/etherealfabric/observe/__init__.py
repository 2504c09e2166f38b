"""Subscribers to the run-event stream: the log, the progress display, Prometheus metrics."""
