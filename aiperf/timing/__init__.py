"""Timing strategies and arrival patterns: when each request may go."""
