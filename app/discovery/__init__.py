"""Composite recipes for a target's observations (CONTRACT.md §3.16)."""
