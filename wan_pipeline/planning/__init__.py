"""What to make: the dataset spec, the prompt table, seeds and fingerprints, and the plan of tasks.

May import: ``errors``, ``providers``. Pure and deterministic: the same spec and table always give the same
plan (DESIGN §3-§5).
"""
