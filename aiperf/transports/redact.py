"""Keep secrets out of what a run stores: an error body that echoes the API key (or any
header whose name says it is a credential) is scrubbed before it lands in a record.

Called on the error path only: a successful request never pays for it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

from aiperf.common.codec import ErrorInfo
from aiperf.common.config import MASK, is_secret_header

# Shorter values would mangle ordinary words of a message and protect nothing real (and
# a secret longer than the mask makes masking terminate, see ``scrub``).
MIN_SECRET_LEN = 4


def secret_values(headers: Mapping[str, str], url: str = "") -> tuple[str, ...]:
    """The values to scrub: each credential header's value, its token without a scheme
    word (``Bearer sk-...`` -> ``sk-...``), and the password of ``url``'s userinfo;
    longest first so a value is masked whole before any part of it is."""
    found: set[str] = set()
    try:
        password = urlsplit(url).password
    except ValueError:  # not a URL we can read: nothing to add
        password = None
    if password:
        found.add(password)
    for name, value in headers.items():
        if not is_secret_header(name):
            continue
        candidates = [value.strip()]
        _, _, token = value.strip().partition(" ")
        if token:
            candidates.append(token.strip())
        found.update(candidates)
    return ordered(found)


def ordered(secrets: Iterable[str]) -> tuple[str, ...]:
    """The secrets worth masking, longest first (a value is masked whole before any part of
    it is)."""
    return tuple(sorted({s for s in secrets if len(s) >= MIN_SECRET_LEN}, key=len,
                        reverse=True))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every secret masked, and a secret's start left where the text was cut
    short (error messages are bounded before they are scrubbed) masked as well."""
    for secret in secrets:
        # Again until gone: masking can join the text around it into the secret anew
        # (it ends, since a secret is longer than the mask).
        while secret in text:
            text = text.replace(secret, MASK)
    for secret in secrets:
        for cut in range(min(len(secret), len(text) + 1) - 1, MIN_SECRET_LEN - 1, -1):
            if text.endswith(secret[:cut]):
                text = text[:-cut] + MASK
                break
    return text


def scrub_error(error: ErrorInfo, secrets: tuple[str, ...]) -> ErrorInfo:
    """``error`` with every secret in its type or message masked (itself if none was)."""
    message, kind = scrub(error.message, secrets), scrub(error.type, secrets)
    if message is error.message and kind is error.type:
        return error
    return ErrorInfo(error.code, kind, message)
