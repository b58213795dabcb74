"""cfai: Cloudflare Workers AI from the command line, and an OpenAI- and Anthropic-compatible proxy."""

__version__ = "0.1.0"
