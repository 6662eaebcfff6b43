"""porchctl's command groups; only ``porch.client`` and ``porch.api`` are used to reach a server."""
