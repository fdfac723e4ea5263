"""The Dagster layer: assets, checks, sensors and jobs for one dataset spec (``dataset.py`` assembles them).

Thin: each asset translates the spec into Dagster objects and hands execution to the core layers, reading
results back as data. May import every core layer and ``resources``.
"""
