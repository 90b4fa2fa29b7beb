"""``sct dashboards push --url URL [--token TOKEN]``: the dashboards into a Grafana that is
already running, through its HTTP API (grafana-client).

The same JSON that ``sct dashboards build`` writes for file provisioning goes into one
folder (uid ``sct``), each dashboard overwriting its earlier version by uid. The
datasource is not created here: it carries InfluxDB's secret, which belongs in Grafana's
provisioning (``dashboards/provisioning/datasources/influxdb.yaml``) or its UI. When it is
missing the push still happens and says so, because every panel would show an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from grafana_client.api import GrafanaApi
from grafana_client.client import GrafanaClientError, GrafanaException

from dashboards import DATASOURCE_UID

FOLDER_UID = "sct"
FOLDER_TITLE = "Smart communities (sct)"


class PushError(Exception):
    """Grafana refused or could not be reached; the message says which and why."""


@dataclass
class Pushed:
    dashboards: list[str] = field(default_factory=list)   # Grafana's URLs of the boards
    folder_created: bool = False
    datasource_missing: bool = False


def push(url: str, token: str, boards: dict[str, str], timeout: float = 10.0) -> Pushed:
    """Push ``boards`` (file name -> dashboard JSON text) to the Grafana at ``url``."""
    api = GrafanaApi.from_url(url, credential=token, timeout=timeout)
    out = Pushed()
    try:
        out.folder_created = _ensure_folder(api)
        out.datasource_missing = not _exists(lambda: api.datasource.get_datasource_by_uid(
            DATASOURCE_UID))
        for name, text in boards.items():
            model: dict[str, Any] = json.loads(text)
            model.pop("id", None)   # Grafana finds the board by uid; an id would pin a row
            answer = api.dashboard.update_dashboard({
                "dashboard": model, "folderUid": FOLDER_UID, "overwrite": True,
                "message": f"sct dashboards push ({name})"})
            out.dashboards.append(str(answer.get("url", model.get("uid"))))
    except GrafanaClientError as e:
        raise PushError(f"Grafana at {url} refused: HTTP {e.status_code} {e.message}"
                        + (" (check the token: it needs the Editor role or a service "
                           "account with dashboards:write)" if e.status_code in (401, 403)
                           else "")) from e
    except (GrafanaException, OSError) as e:   # niquests' connection errors are OSErrors
        raise PushError(f"could not push to Grafana at {url}: {e}") from e
    return out


def _ensure_folder(api: Any) -> bool:   # grafana-client's methods are untyped
    """Create the sct folder unless it exists; True when it was created."""
    if _exists(lambda: api.folder.get_folder(FOLDER_UID)):
        return False
    api.folder.create_folder(FOLDER_TITLE, uid=FOLDER_UID)
    return True


def _exists(get: Any) -> bool:
    try:
        get()
    except GrafanaClientError as e:
        if e.status_code == 404:
            return False
        raise
    return True
