"""The battery flow: readings -> state -> forecasts -> Delta tables and alerts."""
