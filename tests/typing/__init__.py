"""What a type checker makes of dotdo's public API (see public_api.py and misuse.py)."""
