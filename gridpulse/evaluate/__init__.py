"""Evaluations that need the whole stack offline: the simulator's labelled incidents scored
against the shipped detectors (``gridpulse.evaluate.incidents``)."""
