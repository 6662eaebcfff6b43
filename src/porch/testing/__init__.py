"""Helpers for tests: servers and fixtures that production code never imports."""
