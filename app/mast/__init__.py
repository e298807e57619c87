"""The MAST proxy: archive searches, product lists and downloads."""
