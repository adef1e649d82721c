"""Forecast accuracy monitoring: stored forecasts against the readings that arrive later."""
