"""Encoders as plain state dicts with a JSON card: `python -m ssl_lightning.export <folder | key>`."""
