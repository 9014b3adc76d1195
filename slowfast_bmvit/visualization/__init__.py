"""Plots and drawings: per-class AP bars, precision-recall curves, boxes on frames."""
