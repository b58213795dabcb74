"""cfai: Cloudflare Workers AI from the command line, and an OpenAI-compatible proxy in front of it."""

__version__ = "0.1.0"
