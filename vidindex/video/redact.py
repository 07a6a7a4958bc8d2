"""Credentials out of text: URIs and error messages that end up in logs, tables and errors."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

_SECRET_QUERY = re.compile(r"(?i)(signature|sig|token|credential|secret|key|password)=[^&\s]+")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/?#\s@'\"]+@")


def scrub_secrets(text: str, *uris: str) -> str:
    """`text` without user:password@ in URLs and with secret-looking query values masked. The
    user:password of each of `uris` is masked wherever it appears: a library's error may quote
    it without its scheme (s3fs: 'Invalid bucket name "KEY:SECRET@bucket"')."""
    for uri in uris:
        userinfo = _userinfo(uri)
        if userinfo:
            text = text.replace(userinfo, "***")
            password = userinfo.partition(":")[2]
            if len(password) >= 8:  # alone too (a decoded or re-quoted form); a short one would mask common words
                text = text.replace(password, "***")
    text = _URL_USERINFO.sub(r"\1", text)
    return _SECRET_QUERY.sub(r"\1=***", text)


def _userinfo(uri: str) -> str | None:
    try:
        netloc = urlsplit(str(uri)).netloc
    except ValueError:
        return None
    userinfo = netloc.rpartition("@")[0]
    return userinfo or None


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
