"""Source kinds: the YAML config (config.py) and one object per kind."""
