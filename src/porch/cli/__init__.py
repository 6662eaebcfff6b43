"""Command-line entry points: ``porch`` (admin) and ``porchctl`` (client)."""
