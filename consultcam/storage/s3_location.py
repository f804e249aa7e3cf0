"""Where the S3 store lives: `CONSULTCAM_STORAGE_URL=s3://bucket[/prefix][?public_endpoint=…]` parsed and
checked without loading boto3 (the settings validate it at start; `s3.S3ObjectStore.from_url` uses it)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from consultcam.storage.keys import check_key

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


@dataclass(frozen=True)
class S3Location:
    """A parsed `CONSULTCAM_STORAGE_URL`: bucket, key prefix (`""` or ending in `/`) and the endpoint browsers
    use when it differs from `CONSULTCAM_S3_ENDPOINT_URL` (`public_endpoint` query parameter)."""

    bucket: str
    prefix: str = ""
    public_endpoint_url: str = ""


def parse_s3_url(url: str) -> S3Location:
    """Parse `s3://bucket[/prefix][?public_endpoint=https://host[:port]]`.

    Raises ValueError naming `CONSULTCAM_STORAGE_URL` when the bucket name breaks S3's naming rules
    (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html) or the prefix is not a
    clean `/`-separated path (letters, digits, `.`, `_`, `-`; no `..`).
    """
    parts = urlsplit(url)
    if parts.scheme != "s3":
        raise ValueError(
            f"CONSULTCAM_STORAGE_URL must start with s3:// for the S3 store, not {parts.scheme}://"
        )
    bucket = parts.netloc
    if not _BUCKET_RE.match(bucket) or ".." in bucket:
        raise ValueError(
            f"CONSULTCAM_STORAGE_URL names the bucket {bucket!r}, which is not a valid S3 bucket name "
            "(3-63 characters: lower-case letters, digits, dots and hyphens). Use s3://bucket/prefix."
        )
    prefix = parts.path.strip("/")
    if prefix:
        try:
            check_key(prefix)
        except ValueError as exc:
            raise ValueError(
                f"CONSULTCAM_STORAGE_URL has the key prefix {prefix!r}: use letters, digits, '.', '_' "
                "and '-' in '/'-separated parts, with no '..'."
            ) from exc
        prefix += "/"
    query = parse_qs(parts.query)
    unknown = set(query) - {"public_endpoint"}
    if unknown:
        raise ValueError(
            f"CONSULTCAM_STORAGE_URL has unknown parameters {sorted(unknown)}; "
            "only public_endpoint is understood."
        )
    public = query.get("public_endpoint", [""])[0].rstrip("/")
    if public and urlsplit(public).scheme not in ("http", "https"):
        raise ValueError("CONSULTCAM_STORAGE_URL: public_endpoint must be an http(s):// URL.")
    return S3Location(bucket, prefix, public)
