"""Benchmark harness: natpg bench (resumable sweeps, local or Ray) and natpg report."""
