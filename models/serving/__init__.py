"""Serving: a registered model behind MLflow's scoring server."""
