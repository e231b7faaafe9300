"""Where things are and which database to use, resolved in one fixed order:
command-line argument -> GATEWAY_* environment variable -> gateway.toml -> default."""

from __future__ import annotations

import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reconciler.core.digits import plain_digits
from reconciler.core.names import GATEWAY_FILE

if TYPE_CHECKING:  # the schema (pydantic) loads when gateway.toml is read, not with these names
    from reconciler.core.spec import GatewayFile

DEFAULT_LISTEN = "127.0.0.1:8765"
TOKEN_FILE = "api-token"  # in the data folder: the local API's bearer token (0600)
URL_FILE = "gateway.url"  # in the data folder: where the running gateway's API answers
TUNNEL_URL_FILE = "tunnel-door.url"  # in the data folder: the tunnel door's address (cloudflared's origin)


class SettingsError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    config_dir: Path
    data_dir: Path
    dsn: str | None  # None: the embedded PostgreSQL in data_dir
    listen: str
    schema: str = "gateway"  # the PostgreSQL schema holding the tables (tests use one each)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        if not plain_digits(port):
            raise SettingsError(f"listen: {self.listen!r} is not HOST:PORT")
        return host, int(port)

    @property
    def tunnel_host_port(self) -> tuple[str, int]:
        """The tunnel door: the page's own loopback listener that cloudflared's ingress rule for
        `[web] hostname` points at. GATEWAY_TUNNEL_LISTEN (HOST:PORT), else 127.0.0.1 and the
        port after the page's (8766 next to 8765; any free port when the page's is 0). The
        address actually bound is in the data folder's `tunnel-door.url` while running."""
        raw = os.environ.get("GATEWAY_TUNNEL_LISTEN")
        if raw:
            host, _, port = raw.rpartition(":")
            if not plain_digits(port):
                raise SettingsError(f"GATEWAY_TUNNEL_LISTEN: {raw!r} is not HOST:PORT")
            return host.strip("[]") or "127.0.0.1", int(port)
        page = self.host_port[1]
        return "127.0.0.1", (page + 1 if 0 < page < 65535 else 0)


def default_config_dir(arg: str | None) -> Path:
    return Path(arg or os.environ.get("GATEWAY_CONFIG") or "gateway.d").resolve()


def default_data_dir(arg: str | None) -> Path:
    raw = arg or os.environ.get("GATEWAY_HOME")
    if raw:
        return Path(raw).expanduser().resolve()
    import platformdirs

    return Path(platformdirs.user_data_dir("omen-gateway", appauthor=False))


def read_gateway_file(config_dir: Path) -> GatewayFile:
    """gateway.toml, or defaults when absent. A broken one is a loud error at start-up
    (the loader reports it in words; here the daemon only needs dsn and listen)."""
    from reconciler.core.spec import GatewayFile
    from reconciler.engine.config import ConfigError, load_gateway_file

    path = config_dir / GATEWAY_FILE
    if not path.exists():
        return GatewayFile()
    loaded = load_gateway_file(path)
    if isinstance(loaded, ConfigError):
        raise SettingsError(str(loaded))
    return loaded


def resolve(
    config: str | None = None, data_dir: str | None = None, dsn: str | None = None, listen: str | None = None
) -> Settings:
    config_dir = default_config_dir(config)
    file = read_gateway_file(config_dir)  # defaults when the folder or the file is not there
    return Settings(
        config_dir=config_dir,
        data_dir=default_data_dir(data_dir),
        dsn=_dsn(dsn, file.database.dsn),
        listen=_listen(listen, file.web.listen),
        schema=os.environ.get("GATEWAY_DB_SCHEMA") or "gateway",
    )


def peek(config_dir: Path, listen: str | None = None) -> tuple[str | None, str]:
    """(dsn, listen) as `resolve` will give them, read from gateway.toml without the schema:
    enough to check the page's address and to boot the embedded PostgreSQL at once (it then
    boots while the rest is imported). A file that does not read says nothing here;
    `resolve` reports it."""
    try:
        from reconciler.platform.fsutil import read_regular  # never a pipe: it would block the start for good

        raw = tomllib.loads(read_regular(config_dir / GATEWAY_FILE).decode("utf-8-sig"))
        database, web = raw.get("database", {}), raw.get("web", {})
        dsn, web_listen = database.get("dsn"), web.get("listen")
    except (OSError, ValueError, AttributeError, RecursionError):
        dsn, web_listen = None, None
    return (_dsn(None, dsn if isinstance(dsn, str) else None),
            _listen(listen, web_listen if isinstance(web_listen, str) else None))


def _dsn(arg: str | None, in_file: str | None) -> str | None:
    return arg or os.environ.get("GATEWAY_DSN") or in_file or None


def _listen(arg: str | None, in_file: str | None) -> str:
    return arg or os.environ.get("GATEWAY_LISTEN") or in_file or DEFAULT_LISTEN


def ensure_private_dir(path: Path) -> None:
    """The data folder: only this user may read or write it, and nobody else may pass through
    it (o+x, which a gateway run as root used to set, let anyone open a file in it whose name
    they knew). Passing through by the folder's group is kept when set: as root, the embedded
    PostgreSQL's system user gets that way in (reconciler.store.embedded), and no other."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    try:
        path.chmod(0o700 | (path.stat().st_mode & stat.S_IXGRP))
    except OSError:  # pragma: no cover - e.g. a folder owned by another user
        pass
