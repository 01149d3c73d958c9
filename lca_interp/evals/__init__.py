"""Evaluations that turn probes and trained models into claims with numbers."""
