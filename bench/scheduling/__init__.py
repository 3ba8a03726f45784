"""Scheduling: which cells run in which order, in this process or in worker processes."""
