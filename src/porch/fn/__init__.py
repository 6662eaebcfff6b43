"""KRM function runtime: ResourceList I/O, builtin catalog, runtimes, Kptfile pipeline render."""
