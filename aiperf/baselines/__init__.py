"""Baselines: stored results of earlier runs, and the regression gates that compare a new run
with them. ``fingerprint`` says which profile a run measured, ``machine`` where it ran,
``storage`` keeps runs on disk in a versioned JSON format (docs/baselines.md) that a reader
without this package can parse."""
