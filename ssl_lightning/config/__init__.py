"""Typed settings from the Hydra config, the rules every value is checked by, and the cache-key rules."""
