"""Provides the console's screens and dialogs (details, help, inject, confirm, timer picker)."""
