"""pytest-aiperf: LLM-serving performance as pytest tests."""
