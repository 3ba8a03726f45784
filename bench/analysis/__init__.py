"""Analysis: pure functions over result tables (paired ratios, ranking, calibration statistics,
cross-run comparison, verdict words). Nothing here runs a model or renders a page."""
