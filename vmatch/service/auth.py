"""API keys on the routes: the bearer-key checks a route declares (``Depends``), by scope.

Every endpoint but ``/status/live`` needs ``Authorization: Bearer <key>``: 401 without a valid
key, 403 without the scope. The keys themselves are :mod:`vmatch.service.keys`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import anyio
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from vmatch.service.errors import ServiceError
from vmatch.service.keys import ApiKey, KeyStore


def _require(keys: KeyStore, bearer: HTTPBearer, scope: str | None):
    """The dependency that answers the key of the request, if it has ``scope`` (None: any key)."""

    async def check(cred: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> ApiKey:
        if cred is None:
            raise ServiceError(401, "missing_api_key", "send `Authorization: Bearer <key>` (create one with `vmatch key create`)",
                               headers={"WWW-Authenticate": "Bearer"})
        key = await anyio.to_thread.run_sync(keys.verify, cred.credentials)
        if key is None:
            raise ServiceError(401, "invalid_api_key", "the API key is unknown or revoked",
                               headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        if scope is not None and not key.allows(scope):
            raise ServiceError(403, "insufficient_scope",
                               f"this endpoint needs a key with scope {scope!r}; the key has {', '.join(key.scopes)}")
        return key

    return check


@dataclass(frozen=True)
class KeyChecks:
    """One app's key checks: any key, and a key with scope match, curate or admin."""

    bearer: HTTPBearer
    any_key: Callable
    match_key: Callable
    curate_key: Callable
    admin_key: Callable

    @classmethod
    def build(cls, keys: KeyStore) -> "KeyChecks":
        bearer = HTTPBearer(auto_error=False, description="An API key made with `vmatch key create`.")
        return cls(bearer, *(_require(keys, bearer, scope) for scope in (None, "match", "curate", "admin")))

    async def authenticate(self, request: Request) -> None:
        """Run the key check the matched route declares (ServiceError 401/403), if it has one."""
        checks = (self.any_key, self.match_key, self.curate_key, self.admin_key)
        dependant = getattr(request.scope.get("route"), "dependant", None)
        for dep in getattr(dependant, "dependencies", ()):
            if dep.call in checks:
                await dep.call(await self.bearer(request))
