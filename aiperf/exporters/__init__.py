"""Exporters: the console table and the artifact files, one plugin each."""
