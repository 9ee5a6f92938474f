"""Token counting with tiktoken encodings built from package data, never downloaded."""
