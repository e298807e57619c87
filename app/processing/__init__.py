"""Shared science: pure numpy/astropy functions, no FastAPI and no I/O policy."""
