"""Dagster ConfigurableResources: engine settings (provider) and the storage backend. Never API keys.

May import: ``execution``, ``outputs``, ``planning``.
"""
