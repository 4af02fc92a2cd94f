"""The pytest plugin (options, marker, fixtures) - built in the pytest plugin issue."""
