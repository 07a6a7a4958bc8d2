"""Indexing one batch of videos on one model: frames -> batched stream -> rows and snapshots
(engine.py), at the boundaries schedule.py computes."""
