"""diffkeeper's benchmark harness (`just bench`, `just bench-smoke`); see BENCHMARKS.md."""
