"""Liveness for load balancers and operators: which process answered, and how it hears changes."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse

from api.deps import Services, services

router = APIRouter(tags=["Health"])


@router.get("/health", summary="Is this server up, and does it hear other servers' changes")
def health(svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    """The serving process, its store and how it follows changes made elsewhere.

    `changes` is "notices" while the store's change notices reach this process, "polling"
    while they do not (every TWIN_CATALOGUE_TTL seconds) and "polling (no notices)" for a
    store that sends none (GeoPackage).
    """
    listener = svc.listener
    changes = ("polling (no notices)" if listener is None else "notices" if listener.connected else "polling")
    store = svc.view.city.store.url.partition(":")[0]  # the kind only: no host or user for anonymous callers
    return JSONResponse({"status": "ok", "pid": os.getpid(), "store": store, "changes": changes},
                        headers={"Cache-Control": "no-store"})
