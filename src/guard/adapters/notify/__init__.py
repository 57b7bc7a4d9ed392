"""Paging backends: one module per service, each rendering a PageMessage its own way."""
