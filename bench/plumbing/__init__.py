"""Plumbing: the console, lazy imports, option declarations and value parsing."""
