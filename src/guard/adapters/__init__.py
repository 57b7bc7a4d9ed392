"""Adapters: one module per outside system; the only place Google clients are used."""
