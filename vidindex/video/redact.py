"""Credentials out of text: URIs and error messages that end up in logs, tables and errors."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_SECRET_QUERY = re.compile(r"(?i)(signature|sig|token|credential|secret|key|password)=[^&\s]+")


def scrub_secrets(text: str) -> str:
    return _SECRET_QUERY.sub(r"\1=***", text)


def redact_uri(uri: str) -> str:
    """The URI without user:password@ and with secret-looking query values masked."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    if not parts.scheme or len(parts.scheme) == 1:  # plain path (or a Windows drive letter)
        return uri
    netloc = parts.netloc.rsplit("@", 1)[-1]
    if netloc == parts.netloc and scrub_secrets(parts.query) == parts.query:
        return uri  # nothing to hide; urlunsplit would also mangle memory:///x
    return urlunsplit((parts.scheme, netloc, parts.path, scrub_secrets(parts.query), parts.fragment))
