"""Dataset loaders: what each request sends (prompt, output length, timestamp)."""
