"""Optimization dynamics: recording during training (``recording``), loss-landscape evaluation
(``landscape``), the analyses over recorded checkpoints (``analyses``) and the cell that runs them
on a recorded training cell (``cell``)."""
