"""Tessera fpga."""
