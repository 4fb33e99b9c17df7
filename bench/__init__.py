"""`make bench`: benchmarks that print figures; the last line is `BENCH {json}` with all of them."""
