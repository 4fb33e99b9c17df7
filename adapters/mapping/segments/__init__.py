"""Segment maps: one module per segment family, each a function from segment(s) to resource(s)."""
