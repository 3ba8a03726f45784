"""Typed configuration: the dataclasses of each axis (``types``) and the one builder that makes them
from the command line, a TOML file or Python (``build``)."""
