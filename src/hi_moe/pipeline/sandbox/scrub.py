"""Scrubbing what goes back to the model (and into journals and logs) from a sandboxed run.

Isolation is the real protection: in bubblewrap the program sees no secret to leak. This is
the second line, for backends that do not isolate files (process) and for secrets the
harness itself holds: values of the harness's environment, the secrets hi_moe's settings
loaded, private-key blocks and well-known token shapes are replaced by `[redacted]`.
"""

from __future__ import annotations

import os
import re
import threading

__all__ = ["redact", "remember_secret"]

REDACTED = "[redacted]"
_MIN_SECRET = 8
_TOKEN_SHAPES = re.compile(
    r"-----BEGIN [A-Z0-9 ]*(?:PRIVATE KEY|CERTIFICATE)[A-Z ]*-----.*?(?:-----END [A-Z0-9 ]+-----|$)"
    r"|\bsk-[A-Za-z0-9_-]{16,}"
    r"|\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"
    r"|\bgh[pousr]_[A-Za-z0-9]{20,}"
    r"|\bhf_[A-Za-z0-9]{20,}"
    r"|\bxox[abpr]-[A-Za-z0-9-]{10,}"
    r"|\bey[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]*",
    re.DOTALL,
)
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASS|AUTH|CRED|PRIVATE|COOKIE|SESSION", re.I)
_remembered: set[str] = set()
_lock = threading.Lock()


def remember_secret(value: str) -> None:
    """A secret the harness holds (an API key from hi_moe.toml, say) that must never appear in
    what a sandboxed run reports."""
    if len(value) >= _MIN_SECRET:
        with _lock:
            _remembered.add(value)


def _environment_secrets() -> list[str]:
    found = []
    for name, value in os.environ.items():
        if len(value) < _MIN_SECRET:
            continue
        looks_like_path = value.startswith(("/", "~", ".")) or ":/" in value
        if _SECRET_NAME.search(name) or (len(value) >= 16 and not looks_like_path):
            found.append(value)
    return found


def redact(text: str) -> str:
    """`text` with every known secret and every secret-shaped token replaced."""
    with _lock:
        secrets = [*_remembered]
    secrets += _environment_secrets()
    for secret in sorted(set(secrets), key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return _TOKEN_SHAPES.sub(REDACTED, text)
