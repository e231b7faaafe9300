"""Talk to a running gateway over its local API (address and token from the data folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reconciler.settings import TOKEN_FILE, URL_FILE


class NotRunning(Exception):
    pass


class ApiError(Exception):
    pass


class Client:
    def __init__(self, data_dir: Path, timeout: float = 130.0) -> None:
        url_file, token_file = data_dir / URL_FILE, data_dir / TOKEN_FILE
        if not url_file.exists() or not token_file.exists():
            raise NotRunning(f"no gateway is running with data folder {data_dir} (start one with `gateway run`)")
        self.base = url_file.read_text().strip()
        token = token_file.read_text().strip()
        self.headers = {"Authorization": f"Bearer {token}"}
        self.timeout = timeout

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One short connection per call: a CLI makes one or two calls, and nothing is
        left open between them. httpx is imported here, not at the top: the daemon imports
        this module (through the CLI) and never calls it, and httpx brings ~5 MB along."""
        import httpx

        try:
            with httpx.Client(base_url=self.base, headers=self.headers, timeout=self.timeout,
                              trust_env=False) as http:
                response = http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise NotRunning(f"the gateway at {self.base} does not answer ({exc}); is `gateway run` running?") from None
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise ApiError(message)
        return response.json()

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/api/status")  # type: ignore[no-any-return]

    def control(self, verb: str, names: list[str], group: str | None, everything: bool, wait: float) -> dict[str, Any]:
        body = {"verb": verb, "names": names, "group": group, "all": everything, "wait": wait}
        return self._call("POST", "/api/control", json=body)  # type: ignore[no-any-return]

    def shutdown(self, keep_servers: bool = False) -> dict[str, Any]:
        return self._call("POST", "/api/shutdown", json={"keep_servers": keep_servers})  # type: ignore[no-any-return]

    def events(self, **params: Any) -> list[dict[str, Any]]:
        query = {k: v for k, v in params.items() if v is not None}
        return self._call("GET", "/api/events", params=query)["events"]  # type: ignore[no-any-return]
