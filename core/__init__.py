"""Core: configuration, the wire contract, validation, errors and the shared adapters.

Imports nothing of the project; every other package builds on it.
"""
