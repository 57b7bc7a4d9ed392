"""Checks of the committed fixtures against their sources of truth."""
