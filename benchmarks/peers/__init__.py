"""The servers our users would otherwise pick, serving the same model with the same codec and PNG
encoder, for benchmarks/peers_compare.py. Optional: `pip install -e ".[peers]"`."""
