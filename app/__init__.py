"""JWST data services: the MAST proxy and the FITS processing engine."""
