"""Sinks: where normalized rows go. ``base`` holds the contract, one sub-package per store."""
