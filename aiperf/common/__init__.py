"""Building blocks shared by every service: config, messages, codec, comms, hooks, logging."""
