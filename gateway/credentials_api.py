"""``/api/v1/station-credentials`` (operators): provision, list and revoke stations' broker
credentials, as ``smartcharge stations`` does (:class:`gateway.stations.StationProvisioner`)."""

from __future__ import annotations

import falcon

from gateway.security import json_body, require
from gateway.stations import StationProvisioner
from storage import DuplicateError, StationCredential

__all__ = ["StationCredentialResource", "StationCredentialsResource"]


def credential_json(c: StationCredential) -> dict[str, object]:
    return {
        "station_id": c.station_id,
        "name": c.name,
        "created_at": c.created_at,
        "revoked_at": c.revoked_at,
    }


@falcon.before(require("operator"))
class StationCredentialsResource:
    """``GET`` every station's credentials (never a password); ``POST {"station_id", "name"}``
    provisions one and answers 201 with its password, shown this once."""

    def __init__(self, provisioner: StationProvisioner) -> None:
        self._provisioner = provisioner

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"stations": [credential_json(c) for c in self._provisioner.list()]}

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, {"station_id": str, "name": str}, required=("station_id",))
        try:
            done = self._provisioner.add(body["station_id"], body.get("name"))
        except ValueError as exc:
            raise falcon.HTTPUnprocessableEntity(title="Invalid", description=str(exc)) from None
        except DuplicateError:
            raise falcon.HTTPConflict(
                title="Conflict",
                description=f"station {body['station_id']!r} already has credentials:"
                " revoke them first",
            ) from None
        resp.status = falcon.HTTP_201
        resp.media = {
            "station_id": done.station_id,
            "name": done.name,
            "mqtt_username": done.station_id,
            "password": done.password,
        }


@falcon.before(require("operator"))
class StationCredentialResource:
    """``DELETE /station-credentials/{station_id}``: revoke (the broker refuses it at once)."""

    def __init__(self, provisioner: StationProvisioner) -> None:
        self._provisioner = provisioner

    def on_delete(self, req: falcon.Request, resp: falcon.Response, station_id: str) -> None:
        if not self._provisioner.revoke(station_id):
            raise falcon.HTTPNotFound(
                title="Not Found", description=f"no active credentials for {station_id!r}"
            )
        resp.status = falcon.HTTP_204
