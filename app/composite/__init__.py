"""N-channel colour composites (CONTRACT.md §3.7)."""
