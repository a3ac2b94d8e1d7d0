"""ThingsBoard's OTA package REST API on the devserver (OtaPackageController).

1. POST /api/otaPackage {"title", "version", "type": FIRMWARE|SOFTWARE, "deviceProfileId"[, "tag"]
   [, "usesUrl": true, "url"]} -> OtaPackageInfo (title and version are unique together).
2. POST /api/otaPackage/{id}?checksumAlgorithm=SHA256[&checksum=...], the file as the multipart
   part `file`; checksumAlgorithm and checksum may also be multipart fields (Spring reads request
   parameters from both, and the 4.3 Python client sends them so). A given checksum must be the
   file's own ("Wrong otaPackage file!"); without one the server computes it.
3. Assign through the device (POST /api/device with `firmwareId` / `softwareId`) or its profile
   (POST /api/deviceProfile): the device then gets the fw_* / sw_* shared attributes and downloads
   from /api/v1/{token}/firmware?title=&version=.
Also GET /api/otaPackages (paged), /api/otaPackages/{deviceProfileId}/{type}, /api/otaPackage/{id}
(with the data, base64), /api/otaPackage/info/{id}, /api/otaPackage/{id}/download, and DELETE
(refused while a device or profile has the package).
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING

from .checksums import ALGORITHMS, checksum
from .tb_rest import bad_request, is_uuid, not_found, ref, ref_id
from .web import FORM_BODY, MAX_UPLOAD, Request, Response, empty, json_response

if TYPE_CHECKING:
    from .core import DevServer

KINDS = ("FIRMWARE", "SOFTWARE")


def register(srv: "DevServer") -> None:
    api = srv.rest_api

    def info_json(row: dict) -> dict:
        has_data = row["data"] is not None
        return {"id": ref("OTA_PACKAGE", row["id"]), "createdTime": row["created_ms"], "additionalInfo": None,
                "tenantId": ref("TENANT", srv.rest.tenant_id),
                "deviceProfileId": ref("DEVICE_PROFILE", row["device_profile_id"]), "type": row["kind"],
                "title": row["title"], "version": row["version"], "tag": row["tag"], "url": row["url"],
                "hasData": has_data, "fileName": row["file_name"], "contentType": row["content_type"],
                "checksumAlgorithm": row["algorithm"], "checksum": row["checksum"],
                "dataSize": len(row["data"]) if has_data else None, "name": row["title"]}

    def package_json(row: dict) -> dict:
        data = row["data"]
        return {**info_json(row), "data": None if data is None else base64.b64encode(data).decode()}

    def package_row(req: Request) -> tuple[dict | None, Response | None]:
        pkg_id = req.params["id"]
        if not is_uuid(pkg_id):
            return None, bad_request(f"Invalid UUID string: {pkg_id}")
        try:
            return srv.package(pkg_id), None
        except KeyError:
            return None, not_found(f"OtaPackage with id [{pkg_id}] is not found")

    def save_info(req: Request) -> Response:
        payload, refused = api.body_object(req)
        if refused:
            return refused
        existing = ref_id(payload.get("id"))
        if existing is not None:  # ThingsBoard lets an update change nothing that matters here
            req.params["id"] = existing
            row, refused = package_row(req)
            return refused or json_response(info_json(row))
        title, version, kind = payload.get("title"), payload.get("version"), payload.get("type")
        if not isinstance(title, str) or not title.strip():
            return bad_request("OtaPackage title should be specified!")
        if kind not in KINDS:
            return bad_request("Type should be specified!")
        if not isinstance(version, str) or not version:
            return bad_request("OtaPackage version should be specified!")
        profile_id = ref_id(payload.get("deviceProfileId"))
        if profile_id is not None and not srv.sql("SELECT 1 FROM device_profiles WHERE id=?", (profile_id,)):
            return bad_request("OtaPackage is referencing to non-existent device profile!")
        url = payload.get("url") if payload.get("usesUrl") else None
        if payload.get("usesUrl") and not url:
            return bad_request("Ota package URL should be specified!")
        try:
            pkg_id = srv.add_package(title, version, kind=kind, profile=profile_id, tag=payload.get("tag"), url=url)
        except ValueError as exc:
            return bad_request(str(exc))
        if profile_id is None:  # add_package files it under the default profile; ThingsBoard leaves it unset
            srv.sql("UPDATE ota_packages SET device_profile_id=NULL WHERE id=?", (pkg_id,))
        return json_response(info_json(srv.package(pkg_id)))

    def save_data(req: Request) -> Response:
        row, refused = package_row(req)
        if refused:
            return refused
        form = req.form()

        def param(name: str) -> str | None:
            value = req.arg(name)
            if value is None and name in form:
                value = form[name].data.decode("utf-8", "replace")
            return value or None

        algorithm = (param("checksumAlgorithm") or "").upper()
        if not algorithm:
            return bad_request("Required request parameter 'checksumAlgorithm' for method parameter type String "
                               "is not present")
        if algorithm not in ALGORITHMS:
            return bad_request(f"No enum constant ChecksumAlgorithm.{algorithm}")
        upload = form.get("file")
        if upload is None:
            return bad_request("Required part 'file' is not present.")
        given = param("checksum")
        if given is not None and given != checksum(algorithm, upload.data):
            return bad_request("Wrong otaPackage file!")
        if row["url"]:
            return bad_request("Updating otaPackage URL is prohibited!")
        if row["data"] is not None and bytes(row["data"]) != upload.data:
            return bad_request("Updating otaPackage data is prohibited!")
        saved = srv.set_package_data(row["id"], upload.data, algorithm, given,
                                     file_name=upload.file_name or "package.bin",
                                     content_type=upload.content_type or "application/octet-stream")
        return json_response(info_json(saved))

    def packages(req: Request) -> Response:
        rows = [dict(r) for r in srv.sql("SELECT * FROM ota_packages")]
        if "profileId" in req.params:
            rows = [r for r in rows if r["device_profile_id"] == req.params["profileId"]
                    and r["kind"] == req.params["type"] and r["data"] is not None]
        return api.page(req, rows, info_json, {"createdTime": lambda p: p["created_ms"], "title": lambda p: p["title"],
                                               "version": lambda p: p["version"], "type": lambda p: p["kind"],
                                               "url": lambda p: p["url"], "fileName": lambda p: p["file_name"],
                                               "dataSize": lambda p: len(p["data"] or b""),
                                               "checksum": lambda p: p["checksum"]},
                        lambda p: p["title"])

    def one(to_json):
        def handler(req: Request) -> Response:
            row, refused = package_row(req)
            return refused or json_response(to_json(row))
        return handler

    def download(req: Request) -> Response:
        row, refused = package_row(req)
        if refused:
            return refused
        if row["data"] is None:
            return empty(400)
        headers = {"Content-Disposition": f"attachment;filename={row['file_name']}", "x-filename": row["file_name"]}
        return Response(200, bytes(row["data"]), row["content_type"], headers)

    def delete(req: Request) -> Response:
        row, refused = package_row(req)
        if refused:
            return refused
        try:
            srv.delete_package(row["id"])
        except ValueError as exc:
            return bad_request(str(exc))
        return empty(200)

    api.add("POST", "/api/otaPackage", save_info)
    api.add("GET", "/api/otaPackages", packages)
    api.add("GET", "/api/otaPackages/{profileId}/{type}", packages)
    api.add("GET", "/api/otaPackage/info/{id}", one(info_json))
    api.add("GET", "/api/otaPackage/{id}/download", download)
    api.add("GET", "/api/otaPackage/{id}", one(package_json))
    api.add("POST", "/api/otaPackage/{id}", save_data, body_types=FORM_BODY, max_body=MAX_UPLOAD)
    api.add("DELETE", "/api/otaPackage/{id}", delete)
