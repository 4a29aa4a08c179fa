"""Who may write: bearer tokens from the settings (TWIN_API_TOKEN) or a tokens file."""

from __future__ import annotations

import hmac
import threading
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Query, Request

from api.deps import Services, services
from api.settings import ApiSettings

__all__ = ["Unauthorized", "Tokens", "require_write", "require_read"]


class Unauthorized(Exception):
    """A request needs a valid bearer token and has none (the message says which)."""


class Tokens:
    """The tokens that may write, from the settings and an optional file re-read when it changes."""

    def __init__(self, settings: ApiSettings) -> None:
        self.fixed = [settings.api_token.get_secret_value()] if settings.api_token else []
        self.path: Path | None = settings.tokens_file
        self._stamp: float | None = None
        self._from_file: list[str] = []
        self._lock = threading.Lock()

    def _file_tokens(self) -> list[str]:
        if self.path is None:
            return []
        try:
            stamp = self.path.stat().st_mtime
        except OSError:
            return []  # a tokens file that went away grants nothing
        if stamp != self._stamp:
            with self._lock:
                lines = self.path.read_text(encoding="utf-8").splitlines()
                self._from_file = [line.split()[0] for line in lines if line.strip() and not line.lstrip().startswith("#")]
                self._stamp = stamp
        return self._from_file

    @property
    def configured(self) -> bool:
        """True when any token is set up."""
        return bool(self.fixed) or self.path is not None

    def valid(self, token: str) -> bool:
        """True if `token` is one of the tokens (compared in constant time)."""
        return any(hmac.compare_digest(token.encode(), t.encode()) for t in self.fixed + self._file_tokens())


def _token(request: Request, access_token: str | None) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return access_token  # EventSource cannot send headers


def _check(request: Request, svc: Services, access_token: str | None) -> None:
    tokens: Tokens = request.app.state.tokens
    if not tokens.configured:
        raise Unauthorized("this server has no tokens configured; set TWIN_API_TOKEN or TWIN_TOKENS_FILE")
    token = _token(request, access_token)
    if token is None:
        raise Unauthorized("send a token: Authorization: Bearer <token>")
    if not tokens.valid(token):
        raise Unauthorized("the token is not valid")


AccessToken = Annotated[str | None, Query(description="The bearer token, for clients that cannot send headers.",
                                          include_in_schema=False)]


def require_write(request: Request, svc: Annotated[Services, Depends(services)],
                  access_token: AccessToken = None) -> None:
    """A dependency: the request carries a valid token."""
    _check(request, svc, access_token)


def require_read(request: Request, svc: Annotated[Services, Depends(services)],
                 access_token: AccessToken = None) -> None:
    """A dependency: a valid token when the server requires one for reads."""
    if svc.settings.read_token_required:
        _check(request, svc, access_token)
