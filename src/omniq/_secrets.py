"""Keeping the PostgreSQL password out of reprs, messages and logs.

A DSN comes in two forms, both understood here without psycopg (which is an
optional extra): a URL (``postgresql://user:secret@host/db?password=...``) and
libpq's key/value string (``host=h password='sec ret'``). :func:`mask_dsn` keeps
the rest readable and replaces each password with ``***``; :func:`redact` removes
a DSN's password from any text, such as a driver's error message that quotes it.
"""

from __future__ import annotations

import re
from urllib.parse import unquote

MASK = "***"

# URL: everything between the user name's ':' and the last '@' is taken for the
# password. libpq ends it at the first '@', but a raw '@', '/' or '?' in a password
# is more likely a typo than part of a host name: masking a little too much never
# leaks, stopping too early would.
_URL = re.compile(
    r"^(?P<head>[A-Za-z][A-Za-z0-9+.-]*://[^:@/?#]*:)(?P<password>.*)(?P<tail>@[^@]*)$", re.DOTALL
)
_URL_QUERY_PASSWORD = re.compile(r"(?P<head>[?&]password=)(?P<password>[^&#]*)", re.IGNORECASE)
# key/value: password = 'quoted \' value' or password=bare-value
_KV_PASSWORD = re.compile(
    r"(?P<head>(?:^|\s)password\s*=\s*)(?P<password>'(?:[^'\\]|\\.)*'?|\S*)", re.IGNORECASE
)


def _is_url(dsn: str) -> bool:
    return "://" in dsn.split(None, 1)[0] if dsn.strip() else False


def passwords(dsn: str) -> list[str]:
    """The password texts in ``dsn`` as written, and decoded (percent-escapes, quotes)."""
    found: list[str] = []
    if _is_url(dsn):
        match = _URL.match(dsn)
        if match and match["password"]:
            found.append(match["password"])
        found.extend(m["password"] for m in _URL_QUERY_PASSWORD.finditer(dsn) if m["password"])
        found.extend([unquote(text) for text in found])
    else:
        for m in _KV_PASSWORD.finditer(dsn):
            text = m["password"]
            if not text:
                continue
            found.append(text)
            if text.startswith("'"):
                found.append(re.sub(r"\\(.)", r"\1", text.strip("'")))
    # Longest first, so a password that contains another is replaced whole.
    return sorted({text for text in found if text}, key=len, reverse=True)


def mask_dsn(dsn: str) -> str:
    """``dsn`` with every password replaced by ``***``; the rest stays as written."""
    if _is_url(dsn):
        match = _URL.match(dsn)
        if match and match["password"]:
            dsn = f"{match['head']}{MASK}{match['tail']}"
        return _URL_QUERY_PASSWORD.sub(lambda m: f"{m['head']}{MASK}", dsn)
    return _KV_PASSWORD.sub(lambda m: f"{m['head']}{MASK}" if m["password"] else m[0], dsn)


def redact(text: str, dsn: str | None) -> str:
    """``text`` with ``dsn`` masked and any of its passwords replaced by ``***``."""
    if not dsn:
        return text
    text = text.replace(dsn, mask_dsn(dsn))
    for password in passwords(dsn):
        text = text.replace(password, MASK)
    return text
