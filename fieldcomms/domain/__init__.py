"""Domain operations: plain functions over the context, called by thin handlers."""
