"""Tessera rtl."""
