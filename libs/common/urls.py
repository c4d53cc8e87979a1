"""URLs that are safe to print: credentials masked.

``documind up`` prints the Valkey URL it started, and a log line may name the
URL a service connects with; neither may show the password.
:func:`mask_credentials` keeps the scheme, user name, host, port, path and the
other query arguments, and replaces the password with ``***`` wherever a
``redis://`` URL can carry one: in the user info (``user:password@``, or
``:password@`` with no user) and in a ``password`` query argument (redis-py
takes one).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import parse_qsl, urlencode

MASK: Final = "***"


def mask_credentials(url: str) -> str:
    """``url`` with its password replaced by ``***``; a URL without one is returned as is."""
    scheme, sep, rest = url.partition("://")
    # The user info ends at the last '@': a password left unencoded may hold '@', ':'
    # or even '/', and is masked whole rather than parsed.
    userinfo, at, tail = rest.rpartition("@")
    if sep and at and ":" in userinfo:
        url = f"{scheme}://{userinfo.partition(':')[0]}:{MASK}@{tail}"
    base, question, query = url.partition("?")
    query, hash_, fragment = query.partition("#")
    pairs = parse_qsl(query, keep_blank_values=True)
    if not any(name == "password" for name, _ in pairs):
        return url
    query = urlencode([(n, MASK if n == "password" else v) for n, v in pairs], safe="*")
    return f"{base}{question}{query}{hash_}{fragment}"
