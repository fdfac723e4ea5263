"""Where the ledger lives (DESIGN §11), decided from the environment alone.

1. `WAN_PIPELINE_LEDGER_URL` (`postgresql://user[:password]@host:port/db`) when set;
2. otherwise, when the Dagster instance (`$DAGSTER_HOME/dagster.yaml`) stores its runs in PostgreSQL,
   that database (the ledger keeps to its own schema there);
3. otherwise `None`: a SQLite file in the dataset's local state dir (one machine).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import yaml

from wan_pipeline.errors import ConfigError
from wan_pipeline.money.database import is_postgres_url

LEDGER_URL_ENV = "WAN_PIPELINE_LEDGER_URL"


def shared_ledger_url(env: Mapping[str, str] | None = None) -> str | None:
    """The PostgreSQL URL of the shared ledger, or None for the local SQLite one."""
    env = os.environ if env is None else env
    url = env.get(LEDGER_URL_ENV, "").strip()
    if url:
        if not is_postgres_url(url):
            raise ConfigError(f"{LEDGER_URL_ENV} must be a postgresql:// URL (unset it for the local SQLite ledger)")
        return url
    home = env.get("DAGSTER_HOME", "").strip()
    return dagster_postgres_url(Path(home) / "dagster.yaml", env) if home else None


def dagster_postgres_url(config_path: Path, env: Mapping[str, str]) -> str | None:
    """The PostgreSQL URL of a Dagster instance's run storage, or None when it is not PostgreSQL."""
    if not config_path.is_file():
        return None
    try:
        config = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{config_path}: not valid YAML ({err})") from None
    storage = _postgres_storage_config(config)
    if storage is None:
        return None
    if storage.get("postgres_url") is not None:
        return _value(storage["postgres_url"], env, config_path)
    db = storage.get("postgres_db")
    if not isinstance(db, dict):
        raise ConfigError(f"{config_path}: PostgreSQL storage needs postgres_url or postgres_db")
    user = quote(_value(db.get("username", "postgres"), env, config_path), safe="")
    password = db.get("password")
    auth = user + (":" + quote(_value(password, env, config_path), safe="") if password is not None else "")
    host = _value(db.get("hostname", "localhost"), env, config_path)
    port = _value(db.get("port", 5432), env, config_path)
    name = _value(db.get("db_name", "postgres"), env, config_path)
    scheme = _value(db.get("scheme", "postgresql"), env, config_path)
    params = db.get("params") or {}
    query = "?" + urlencode({k: _value(v, env, config_path) for k, v in params.items()}) if params else ""
    return f"{scheme}://{auth}@{host}:{port}/{name}{query}"


def _postgres_storage_config(config: dict[str, Any]) -> dict[str, Any] | None:
    storage = config.get("storage")
    if isinstance(storage, dict) and isinstance(storage.get("postgres"), dict):
        return dict(storage["postgres"])
    runs = config.get("run_storage")
    if isinstance(runs, dict) and str(runs.get("module", "")).startswith("dagster_postgres"):
        return dict(runs.get("config") or {})
    return None


def _value(raw: Any, env: Mapping[str, str], where: Path) -> str:
    """A dagster.yaml scalar, or `{env: NAME}` read from the environment as Dagster does."""
    if isinstance(raw, dict) and "env" in raw:
        name = str(raw["env"])
        if not env.get(name):
            raise ConfigError(f"{where} reads the environment variable {name} for its PostgreSQL storage; it is unset")
        return env[name]
    return str(raw)
