"""Tessera sim."""
