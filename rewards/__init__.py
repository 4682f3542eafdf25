"""Rule-based rewards (math, code, format) with TRL's signature, and their registry."""
