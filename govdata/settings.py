"""Settings from the environment, with defaults that make the demo work on a fresh clone."""
from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def layout_folder(name: str) -> Path:
    """A top-level folder of the layout (dags, standards, …): nested in govdata/ when installed
    from a wheel, beside it in a checkout."""
    nested = Path(__file__).resolve().parent / name
    return nested if nested.is_dir() else PROJECT_ROOT / name


def _env_path(name: str, default: Path) -> Path:
    return Path(os.environ.get(name, str(default))).expanduser().resolve()


try:   # the CLI (typer, which vendors click) prints a ClickException as one error line, exit code 1
    from typer.core import _click as _cli_click
    _CliError = _cli_click.exceptions.ClickException
except (ImportError, AttributeError):  # pragma: no cover - older typer uses click itself
    from click import ClickException as _CliError


class InsecureKeyFile(_CliError, PermissionError):
    """A key file other users can read: govdata refuses to run (one line: the file and the fix)."""


def check_key_file(path: Path) -> None:
    """Refuses a key file that group or others may read or write."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        return
    if mode & 0o077:
        raise InsecureKeyFile(f"key file {path} is readable by other users (mode {mode:04o}); "
                              f"run: chmod 600 {path}")


# Rows of a source the normalise and snapshot tasks hold at a time (issue 14: memory bounded by a
# chunk, not by the source). Measured on the largest demo source (zhengwu, 1M rows), normalise
# task peak / seconds: 100,000 rows 0.9 GB / 24 s; 250,000 rows 1.3 GB / 19 s; 500,000 rows
# 2.0 GB / 19 s; the source whole 2.9 GB / 18 s. 250,000 is as fast as whole (the per-unique
# caches still pay off) at less than half the memory; at 5M rows it peaks at 1.7 GB (the key
# column, read whole for the duplicate check, grows with the source).
NORMALISE_CHUNK_ROWS = 250_000


def _hex_keys(text: str) -> list[bytes]:
    return [bytes.fromhex(k.strip()) for k in text.replace(",", "\n").splitlines() if k.strip()]


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

    @property
    def previous_key_file(self) -> Path:
        """Keys retired by `govdata vault rotate-key`, newest first: they only decrypt."""
        return self.key_file.with_name(self.key_file.name + ".previous")

    @property
    def lake_keep_runs(self) -> int:
        """Run folders the lake keeps (GOVDATA_LAKE_KEEP_RUNS, at least 1)."""
        return max(1, int(os.environ.get("GOVDATA_LAKE_KEEP_RUNS", "3")))

    @property
    def normalise_chunk_rows(self) -> int:
        """Rows normalised (and snapshotted) at a time: GOVDATA_NORMALISE_CHUNK_ROWS, else
        NORMALISE_CHUNK_ROWS (at least 1)."""
        return max(1, int(os.environ.get("GOVDATA_NORMALISE_CHUNK_ROWS", str(NORMALISE_CHUNK_ROWS))))

    @property
    def normalise_workers(self) -> int:
        """Processes a source's chunks are normalised in: GOVDATA_NORMALISE_WORKERS, else one per
        core this process may use, at most two (the machines are shared); 1: in the task's process."""
        from govdata.forking import default_workers

        return max(1, int(os.environ.get("GOVDATA_NORMALISE_WORKERS", str(default_workers()))))

    @property
    def identify_bulk_limit(self) -> int:
        """Tokens one `govdata identify` may resolve without a second reason."""
        return int(os.environ.get("GOVDATA_IDENTIFY_BULK_LIMIT", "10"))

    def check_keys(self) -> None:
        """Start-up check: the key file (and its retired keys) readable by the owner only."""
        if not os.environ.get("GOVDATA_TOKEN_KEY"):
            check_key_file(self.key_file)
            check_key_file(self.previous_key_file)

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
        check_key_file(path)
        return bytes.fromhex(path.read_text().strip())

    def previous_token_keys(self) -> list[bytes]:
        """Retired keys (GOVDATA_TOKEN_KEY_PREVIOUS, comma-separated hex, or <key file>.previous):
        lake files and vault rows written before a rotation are still decrypted with them."""
        env = os.environ.get("GOVDATA_TOKEN_KEY_PREVIOUS")
        if env is not None:
            return _hex_keys(env)
        path = self.previous_key_file
        if os.environ.get("GOVDATA_TOKEN_KEY") or not path.exists():
            return []
        check_key_file(path)
        return _hex_keys(path.read_text())


def get_settings() -> Settings:
    """The settings, after govdata's process policy: umask 0077 (every file it creates is the
    owner's only) and the key-file check (a group/world-readable key file stops the command)."""
    from govdata.lake import private_umask

    private_umask()
    settings = Settings()
    settings.check_keys()
    return settings
