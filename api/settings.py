"""Server settings, read from the environment (TWIN_*) by the app, never by the library."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, model_validator
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
    api_token: SecretStr | None = Field(None, description="A bearer token that may write (post observations).")
    tokens_file: Path | None = Field(None, description="A file of tokens that may write, one a line "
                                                       "(`TOKEN [label]`, # comments); re-read when it changes.")
    read_token_required: bool = Field(False, description="Reads need a token too (else they are open).")
    mqtt_url: str | None = Field(None, description="Subscribe to observations on this broker, "
                                                   "e.g. mqtt://127.0.0.1:1883.")
    thresholds_file: Path | None = Field(None, description="TOML warning and alarm bands (default: built in).")
    sensor_snap_m: float = Field(10.0, ge=0, description="Sensors without a pipe_id watch the nearest pipe "
                                                         "within this many metres.")
    max_future_s: float = Field(300.0, ge=0, description="Observations further ahead of the clock are refused.")
    status_poll_s: float = Field(0.15, gt=0, description="How often a process reads new status events.")
    listen: bool = Field(True, description="Hear the store's change notices (PostgreSQL LISTEN/NOTIFY), so "
                                           "changes made through any server show at once; GeoPackage cities poll.")
    notified_refresh_s: float = Field(30.0, gt=0, description="While change notices flow, re-read the catalogue "
                                                              "and status events this often anyway (for writers "
                                                              "that send none).")
    sweep_s: float = Field(5.0, gt=0, description="How often silent sensors are checked for staleness.")
    workers: int = Field(1, ge=1, description="How many worker processes serve the city (set by `twin serve`).")
    simulate_rate: float = Field(0.0, ge=0, description="Run the sensor simulator in-process at this many "
                                                        "readings a second (the demo); 0: off.")

    @model_validator(mode="after")
    def _default_within_max(self) -> "ApiSettings":
        if self.default_limit > self.max_limit:
            raise ValueError(f"default_limit {self.default_limit} exceeds max_limit {self.max_limit}")
        return self
