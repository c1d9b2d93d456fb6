"""Compatibility layers for scripts written for other workload management systems (PanDA)."""
