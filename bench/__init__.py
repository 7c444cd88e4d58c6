"""Side-by-side benchmarks against the stock TVM RPC server (`make bench`); run as `python -m bench.<name>` from the repository root."""
