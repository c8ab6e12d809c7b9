"""The float64 NumPy oracle: math only (docs/architecture.md, "refimpl: the oracle")."""
