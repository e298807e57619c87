"""Measurements on FITS files: regions, sources, tables, spectra (CONTRACT.md §3.11-3.15)."""
