"""Evaluation: the paper's metrics and (later) the harness that reproduces its tables."""
