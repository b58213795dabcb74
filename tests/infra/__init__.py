"""Real PostgreSQL, Redis and S3-compatible servers for tests (servers.py), as session fixtures (fixtures.py)."""
