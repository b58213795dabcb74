"""The `[blobs]` table: where hosted images (and later batch files) keep their bytes.

Pure: stdlib only. No url (the default) keeps them under the data directory, as a single host always has;
`s3://bucket/prefix` puts them on any S3-compatible store (Cloudflare R2, MinIO, AWS) so every replica of a
shared gateway serves what another made. Credentials are never here: the standard AWS_* environment variables.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# S3 bucket names: 3-63 lower-case letters, digits, dots and hyphens (R2 is stricter, never looser)
# Patterns compiled on first use (re's cache), not at import, where every one-shot command paid for them.
_BUCKET = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"
_PREFIX = r"^[A-Za-z0-9!_.*'()/-]*$"


@dataclass(frozen=True, slots=True)
class BlobsConfig:
    """Where stored files and images go: the data directory, or an S3-compatible bucket."""

    url: str | None = None  # None: the data directory
    endpoint: str | None = None  # e.g. https://<account>.r2.cloudflarestorage.com; None: AWS_ENDPOINT_URL or AWS
    region: str | None = None  # None: AWS_REGION (R2: "auto")


def parse_s3_url(url: str) -> tuple[str, str]:
    """(bucket, prefix without slashes at either end) of `s3://bucket/prefix`; ValueError says what is wrong."""
    if not url.startswith("s3://"):
        raise ValueError("must start with s3:// (s3://bucket or s3://bucket/prefix)")
    bucket, _, prefix = url[len("s3://"):].partition("/")
    if not re.fullmatch(_BUCKET, bucket):
        raise ValueError(f"{bucket!r} is not a bucket name (3-63 lower-case letters, digits, dots, hyphens)")
    prefix = prefix.strip("/")
    if not re.fullmatch(_PREFIX, prefix) or "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
        raise ValueError(f"{prefix!r} is not a usable key prefix (letters, digits, and !_.*'()-/)")
    return bucket, prefix
