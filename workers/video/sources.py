"""Video sources as the worker and the API name them: the live schemes, and
a source fit to show or log (credentials masked). No OpenCV here: the API
imports it."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

LIVE_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://")
_SECRET_PARAM = re.compile(r"(?i)([?&;](?:[^=&;]*(?:user|pass|pwd|token|key|auth|"
                           r"secret|sig)[^=&;]*)=)[^&;#]*")


def mask_source(source: str) -> str:
    """``source`` fit to show or log: the user and password of a URL, and the
    values of query parameters named like credentials, as ``***``."""
    if "://" not in source:
        return source  # a file
    try:
        parts = urlsplit(source)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<unparsable URL>"
    host = f"[{host}]" if ":" in host else host
    if "@" in parts.netloc:
        host = "***:***@" + host
    shown = urlunsplit(parts._replace(netloc=host + port))
    return _SECRET_PARAM.sub(r"\1***", shown)
