"""omen-gateway's reconciler: a TOML folder in, real processes out, every transition in PostgreSQL."""

__version__ = "0.1.0"
