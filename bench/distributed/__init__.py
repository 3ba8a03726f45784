"""Data-parallel training through torchrun: the launcher, the per-rank worker and the DDP loop."""
