"""FITS viewer endpoints: thumbnail, preview, histogram, pixel data, cube info."""
