"""Reference SSMs (LRU, S5, selective) in PyTorch and JAX, tasks, trainers and the CLI."""
