"""Storage: result files, run folders, their metadata, the run index and the calibration."""
