"""Code that several packages need: image/mask IO, checkpoints, CLI plumbing, the training engine."""
__version__ = "0.1.0"
