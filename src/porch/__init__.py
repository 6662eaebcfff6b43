"""porch: a Porch-compatible Configuration-as-Data package orchestrator."""

__version__ = "0.1.0"
