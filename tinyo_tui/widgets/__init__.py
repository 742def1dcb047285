"""Provides the console's widgets, one per module."""
