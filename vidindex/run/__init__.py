"""The Ray run: discover.py plans the videos, pipeline.py spreads them over actor pools (ray.py
declares the actors and connects to Ray), progress.py and metrics.py report on it."""
