"""Streaming early-warning detectors (issue 9): pure, self-contained, no I/O."""
