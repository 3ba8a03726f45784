"""Turns result files into tables, charts and HTML. Never runs a model."""
