"""Tessera tb."""
