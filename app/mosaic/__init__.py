"""WCS mosaics and footprints (CONTRACT.md §3.8-3.10)."""
