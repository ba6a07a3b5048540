"""Client side of reward-service: the HTTP client SDK and trainers that call it."""
