"""Wire models of the Anthropic Messages API (pure)."""
