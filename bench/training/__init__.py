"""Training: the step loop, a model's training run in blocks, time to accuracy, and the profiled
training steps."""
