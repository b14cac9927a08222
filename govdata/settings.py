"""Settings from the environment, with defaults that make the demo work on a fresh clone."""
from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _env_path(name: str, default: Path) -> Path:
    return Path(os.environ.get(name, str(default))).expanduser().resolve()


@dataclass(frozen=True)
class Settings:
    """GOVDATA_* environment variables; the warehouse URL defaults to a DuckDB file."""

    home: Path = field(default_factory=lambda: _env_path("GOVDATA_HOME", PROJECT_ROOT / "demo"))

    @property
    def lake(self) -> str:
        return os.environ.get("GOVDATA_LAKE", str(self.home / "lake"))

    @property
    def warehouse_url(self) -> str:
        return os.environ.get("GOVDATA_WAREHOUSE_URL", f"duckdb:///{self.home / 'warehouse.duckdb'}")

    @property
    def key_file(self) -> Path:
        return _env_path("GOVDATA_KEY_FILE", self.home / "govdata.key")

    def token_key(self) -> bytes:
        """HMAC/AES key: GOVDATA_TOKEN_KEY (hex) or a local key file created with mode 0600."""
        env = os.environ.get("GOVDATA_TOKEN_KEY")
        if env:
            return bytes.fromhex(env)
        path = self.key_file
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32))
        return bytes.fromhex(path.read_text().strip())


def get_settings() -> Settings:
    return Settings()
