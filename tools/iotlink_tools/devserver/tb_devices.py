"""ThingsBoard's device and device-profile REST API on the devserver (DeviceController,
DeviceProfileController), with the server's shapes and rules.

- POST /api/device creates (optional `?accessToken=`; a taken token or name is 400 and nothing is
  made) or, with the `id` of an existing device, updates it: name, label, profile
  (`deviceProfileId` wins over `type`; an unknown `type` makes a profile of that name; neither
  is the default profile), `firmwareId` and `softwareId` (what assigns an OTA package; the
  package must exist, be of that type, have its file and belong to the device's profile).
- Credentials are access tokens only: GET /api/device/{id}/credentials, POST /api/device/credentials
  (changes the token), POST /api/device-with-credentials.
- Device profiles carry the provisioning settings (`provisionType`, `provisionDeviceKey`,
  `profileData.provisionConfiguration.provisionDeviceSecret`) and a profile-wide `firmwareId` /
  `softwareId`, which every device of the profile without its own package follows.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from .core import PACKAGE_COLUMNS
from .tb_rest import UNASSIGNED_CUSTOMER, bad_request, is_uuid, not_found, ref, ref_id
from .web import Request, Response, empty, json_response

if TYPE_CHECKING:
    from .core import DevServer

CREDENTIALS_NAMESPACE = uuid.UUID("6f1c6f0e-7b0a-4c55-9f56-0a5d8c1e2b3a")
PROVISION_TYPES = ("DISABLED", "ALLOW_CREATE_NEW_DEVICES", "CHECK_PRE_PROVISIONED_DEVICES")
DEFAULT_CONFIGURATION = {"configuration": {"type": "DEFAULT"}, "transportConfiguration": {"type": "DEFAULT"}}


def register(srv: "DevServer") -> None:
    api = srv.rest_api

    def package_ref(pkg_id: str | None) -> dict | None:
        return ref("OTA_PACKAGE", pkg_id)

    def device_json(row: dict) -> dict:
        profile = srv.device_profile(row["type"])
        return {"id": ref("DEVICE", row["id"]), "createdTime": row["created_ms"],
                "tenantId": ref("TENANT", srv.rest.tenant_id), "customerId": ref("CUSTOMER", UNASSIGNED_CUSTOMER),
                "name": row["name"], "type": row["type"], "label": row["label"],
                "deviceProfileId": ref("DEVICE_PROFILE", profile["id"]), "deviceData": DEFAULT_CONFIGURATION,
                "firmwareId": package_ref(row["firmware_id"]), "softwareId": package_ref(row["software_id"]),
                "externalId": None, "additionalInfo": None, "version": 1}

    def credentials_json(row: dict) -> dict:
        return {"id": {"id": str(uuid.uuid5(CREDENTIALS_NAMESPACE, row["id"]))}, "createdTime": row["created_ms"],
                "deviceId": ref("DEVICE", row["id"]), "credentialsType": "ACCESS_TOKEN",
                "credentialsId": row["token"], "credentialsValue": None, "version": 1}

    def profile_json(row: dict) -> dict:
        return {"id": ref("DEVICE_PROFILE", row["id"]), "createdTime": row["created_ms"],
                "tenantId": ref("TENANT", srv.rest.tenant_id), "name": row["name"],
                "description": row["description"], "image": None, "type": "DEFAULT", "transportType": "DEFAULT",
                "provisionType": row["provision_type"], "defaultRuleChainId": None, "defaultDashboardId": None,
                "defaultQueueName": None, "defaultEdgeRuleChainId": None,
                "profileData": {**DEFAULT_CONFIGURATION, "alarms": None, "provisionConfiguration": {
                    "type": row["provision_type"], "provisionDeviceSecret": row["provision_secret"]}},
                "provisionDeviceKey": row["provision_key"], "firmwareId": package_ref(row["firmware_id"]),
                "softwareId": package_ref(row["software_id"]), "externalId": None, "version": 1,
                "default": bool(row["is_default"])}

    def profile_info_json(row: dict) -> dict:
        return {"id": ref("DEVICE_PROFILE", row["id"]), "tenantId": ref("TENANT", srv.rest.tenant_id),
                "name": row["name"], "image": None, "defaultDashboardId": None, "type": "DEFAULT",
                "transportType": "DEFAULT"}

    def profile_row(profile_id: str) -> tuple[dict | None, Response | None]:
        if not is_uuid(profile_id):
            return None, bad_request(f"Invalid UUID string: {profile_id}")
        rows = srv.sql("SELECT * FROM device_profiles WHERE id=?", (profile_id,))
        if not rows:
            return None, not_found(f"Device profile with id [{profile_id}] is not found")
        return dict(rows[0]), None

    def package_problem(payload: dict, profile_id: str) -> str | None:
        """ThingsBoard's refusal of the firmwareId/softwareId in payload for that profile, if any."""
        for kind, field in (("FIRMWARE", "firmwareId"), ("SOFTWARE", "softwareId")):
            pkg_id = ref_id(payload.get(field))
            if pkg_id is None:
                continue
            name = kind.lower()
            try:
                pkg = srv.package(pkg_id)
            except KeyError:
                return f"Can't assign non-existent {name}!"
            if pkg["kind"] != kind:
                return f"Can't assign {name} with type: {pkg['kind']}"
            if pkg["data"] is None and not pkg["url"]:
                return f"Can't assign {name} with empty data!"
            if pkg["device_profile_id"] != profile_id:
                return f"Can't assign {name} with different deviceProfile!"
        return None

    def target_profile(payload: dict) -> tuple[dict | None, Response | None]:
        """The profile a saved device gets: deviceProfileId, else `type` (made if new), else default."""
        profile_id = ref_id(payload.get("deviceProfileId"))
        if profile_id:
            rows = srv.sql("SELECT * FROM device_profiles WHERE id=?", (profile_id,))
            if not rows:
                return None, bad_request("Device is referencing non-existing device profile!")
            return dict(rows[0]), None
        name = payload.get("type")
        if isinstance(name, str) and name.strip():
            try:
                return srv.device_profile(name), None
            except KeyError:
                return srv.add_device_profile(name), None
        return srv.default_profile(), None

    # ---- devices ---------------------------------------------------------------------
    def save_device(req: Request) -> Response:
        payload, refused = api.body_object(req)
        if refused:
            return refused
        existing = ref_id(payload.get("id"))
        if existing is not None:
            row, refused = api.device(existing)
            if refused:
                return refused
        name = payload.get("name")
        if not isinstance(name, str) or not name.strip():
            return bad_request("Device name should be specified!")
        profile, refused = target_profile(payload)
        if refused:
            return refused
        problem = package_problem(payload, profile["id"])
        if problem:
            return bad_request(problem)
        fields = {"name": name, "type": profile["name"], "label": payload.get("label"),
                  "firmware_id": ref_id(payload.get("firmwareId")), "software_id": ref_id(payload.get("softwareId"))}
        try:
            if existing is None:
                dev = srv.add_device(token=req.arg("accessToken") or None, **fields)
            else:
                dev = srv.update_device(existing, **fields)
        except ValueError as exc:  # a taken token or name; nothing is changed
            return bad_request(str(exc))
        return json_response(device_json(dev))

    def save_device_with_credentials(req: Request) -> Response:
        payload, refused = api.body_object(req)
        if refused:
            return refused
        device, credentials = payload.get("device"), payload.get("credentials") or {}
        if not isinstance(device, dict) or not isinstance(credentials, dict):
            return bad_request("Invalid request body")
        if credentials.get("credentialsType", "ACCESS_TOKEN") != "ACCESS_TOKEN":
            return bad_request("The devserver keeps access tokens only")
        name = device.get("name")
        if not isinstance(name, str) or not name.strip():
            return bad_request("Device name should be specified!")
        profile, refused = target_profile(device)
        if refused:
            return refused
        try:
            dev = srv.add_device(name, credentials.get("credentialsId") or None, profile["name"], device.get("label"))
        except ValueError as exc:
            return bad_request(str(exc))
        return json_response(device_json(dev))

    def get_device(req: Request) -> Response:
        row, refused = api.device(req.params["id"])
        return refused or json_response(device_json(row))

    def delete_device(req: Request) -> Response:
        row, refused = api.device(req.params["id"])
        if refused:
            return refused
        srv.delete_device(row["id"])
        return empty(200)

    def credentials(req: Request) -> Response:
        row, refused = api.device(req.params["id"])
        return refused or json_response(credentials_json(row))

    def save_credentials(req: Request) -> Response:
        payload, refused = api.body_object(req)
        if refused:
            return refused
        row, refused = api.device(ref_id(payload.get("deviceId")) or "")
        if refused:
            return refused
        if payload.get("credentialsType") != "ACCESS_TOKEN":
            return bad_request("The devserver keeps access tokens only")
        token = payload.get("credentialsId")
        if not isinstance(token, str) or not token:
            return bad_request("Device credentials id should be specified!")
        try:
            dev = srv.update_device(row["id"], token=token)
        except ValueError as exc:
            return bad_request(str(exc))
        return json_response(credentials_json(dev))

    def by_name(req: Request) -> Response:
        name = req.arg("deviceName", "")
        rows = srv.sql("SELECT * FROM devices WHERE name=?", (name,))
        if not rows:
            return not_found(f"Device with name [{name}] is not found")
        return json_response(device_json(dict(rows[0])))

    def tenant_devices(req: Request) -> Response:
        if req.arg("deviceName") is not None:
            return by_name(req)
        rows = [dict(row) for row in srv.sql("SELECT * FROM devices ORDER BY created_ms, id")]
        if req.arg("type"):
            rows = [row for row in rows if row["type"] == req.arg("type")]
        return api.page(req, rows, device_json, {"createdTime": lambda d: d["created_ms"], "name": lambda d: d["name"],
                                                 "type": lambda d: d["type"], "label": lambda d: d["label"]},
                        lambda d: d["name"])

    # ---- device profiles -------------------------------------------------------------
    def save_profile(req: Request) -> Response:
        payload, refused = api.body_object(req)
        if refused:
            return refused
        profile_id = ref_id(payload.get("id"))
        if profile_id is not None:
            _, refused = profile_row(profile_id)
            if refused:
                return refused
        name = payload.get("name")
        if not isinstance(name, str) or not name.strip():
            return bad_request("Device profile name should be specified!")
        provisioning = ((payload.get("profileData") or {}).get("provisionConfiguration") or {})
        kind = payload.get("provisionType") or provisioning.get("type") or "DISABLED"
        key, secret = payload.get("provisionDeviceKey"), provisioning.get("provisionDeviceSecret")
        if kind not in PROVISION_TYPES:
            return bad_request(f"The devserver provisions with {', '.join(PROVISION_TYPES)}, not {kind}")
        if kind != "DISABLED" and not (key and secret):
            return bad_request("Provision device key and secret should be specified!")
        clash = srv.sql("SELECT id FROM device_profiles WHERE (name=? OR provision_key=?) AND id<>?",
                        (name, key, profile_id or ""))
        if clash:
            return bad_request("Device profile with such name or provision device key already exists!")
        if profile_id is None:
            profile_id = srv.add_device_profile(name)["id"]
        problem = package_problem(payload, profile_id)
        if problem:
            return bad_request(problem)
        profile = srv.update_device_profile(
            profile_id, name=name, description=payload.get("description"), provision_type=kind,
            provision_key=key if kind != "DISABLED" else None, provision_secret=secret if kind != "DISABLED" else None,
            **{column: ref_id(payload.get(field)) for field, column in
               (("firmwareId", PACKAGE_COLUMNS["FIRMWARE"]), ("softwareId", PACKAGE_COLUMNS["SOFTWARE"]))})
        return json_response(profile_json(profile))

    def get_profile(to_json):
        def handler(req: Request) -> Response:
            row, refused = profile_row(req.params["id"])
            return refused or json_response(to_json(row))
        return handler

    def delete_profile(req: Request) -> Response:
        row, refused = profile_row(req.params["id"])
        if refused:
            return refused
        try:
            srv.delete_device_profile(row["id"])
        except ValueError as exc:
            return bad_request(str(exc))
        return empty(200)

    def make_default(req: Request) -> Response:
        row, refused = profile_row(req.params["id"])
        if refused:
            return refused
        srv.make_default_profile(row["id"])
        return json_response(profile_json(srv.device_profile(row["id"])))

    def profiles(to_json):
        def handler(req: Request) -> Response:
            rows = [dict(row) for row in srv.sql("SELECT * FROM device_profiles")]
            return api.page(req, rows, to_json, {"createdTime": lambda p: p["created_ms"], "name": lambda p: p["name"],
                                                 "description": lambda p: p["description"],
                                                 "isDefault": lambda p: p["is_default"]},
                            lambda p: p["name"])
        return handler

    api.add("POST", "/api/device", save_device)
    api.add("POST", "/api/device-with-credentials", save_device_with_credentials)
    api.add("GET", "/api/device/{id}", get_device)
    api.add("DELETE", "/api/device/{id}", delete_device)
    api.add("GET", "/api/device/{id}/credentials", credentials)
    api.add("POST", "/api/device/credentials", save_credentials)
    api.add("GET", "/api/tenant/devices", tenant_devices)
    api.add("GET", "/api/tenant/device", by_name)
    api.add("POST", "/api/deviceProfile", save_profile)
    api.add("GET", "/api/deviceProfile/{id}", get_profile(profile_json))
    api.add("DELETE", "/api/deviceProfile/{id}", delete_profile)
    api.add("POST", "/api/deviceProfile/{id}/default", make_default)
    api.add("GET", "/api/deviceProfiles", profiles(profile_json))
    api.add("GET", "/api/deviceProfileInfos", profiles(profile_info_json))
    api.add("GET", "/api/deviceProfileInfo/default",
            lambda req: json_response(profile_info_json(srv.default_profile())))
    api.add("GET", "/api/deviceProfileInfo/{id}", get_profile(profile_info_json))
