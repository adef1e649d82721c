"""Fleets for evaluation only: generators written independently of Pitstop's simulator.

Nothing in the product imports this package; it exists so models are measured on data that
does not share the simulator's assumptions.
"""
