"""Server settings, read from the environment (TWIN_*) by the app, never by the library."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ApiSettings"]


class ApiSettings(BaseSettings):
    """How `twin serve` serves a city."""

    model_config = SettingsConfigDict(env_prefix="TWIN_", extra="ignore")

    city: Path | None = Field(None, description="The city workspace folder to serve.")
    default_limit: int = Field(100, ge=1, description="Items per page when a client gives no limit.")
    max_limit: int = Field(10_000, ge=1, description="The largest limit a client may ask for.")
    catalogue_ttl: float = Field(0.5, ge=0, description="Seconds a server trusts its copy of the layer catalogue.")
    tile_cache_items: int = Field(8192, ge=0, description="Tiles kept in memory per process.")
    disk_cache: bool = Field(True, description="Keep rendered tiles under CITY/cache/tiles.")
    tile_max_age: int = Field(60, ge=0, description="Cache-Control max-age of tiles, in seconds.")

    @model_validator(mode="after")
    def _default_within_max(self) -> "ApiSettings":
        if self.default_limit > self.max_limit:
            raise ValueError(f"default_limit {self.default_limit} exceeds max_limit {self.max_limit}")
        return self
