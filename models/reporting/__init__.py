"""Reporting: model cards, explanations and plots."""
