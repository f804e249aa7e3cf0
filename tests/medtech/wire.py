"""Requests as consultcam sends them to ALEX, for the double's own tests and any test calling it directly."""

from __future__ import annotations

import base64
import hashlib
import io
import json
from typing import Any

import httpx
from PIL import Image

from tests.medtech.double import NHI_SYSTEM, AlexDouble

NHI = "ZZZ0016"
FACILITY = "F2N060-E"
DECODE = "/vendorforms/api/getlaunchcontextstring"


def token(alex: AlexDouble, http: httpx.Client) -> str:
    """A fresh access token from the double's token endpoint (client credentials in the form)."""
    form = {
        "grant_type": "client_credentials",
        "client_id": alex.client_id,
        "client_secret": alex.client_secret,
        "scope": alex.scope,
    }
    answer = http.post(alex.token_url, data=form)
    assert answer.status_code == 200
    return str(answer.json()["access_token"])


def image(kind: str, size: tuple[int, int] = (40, 30)) -> bytes:
    """A small real file made by Pillow: kind "TIFF", "PDF", "JPEG" or "PNG"."""
    out = io.BytesIO()
    Image.new("RGB", size, (200, 120, 90)).save(out, format=kind)
    return out.getvalue()


def document(
    patient_id: str, data: bytes, content_type: str = "image/tiff", **changes: Any
) -> dict[str, Any]:
    """A DocumentReference as consultcam posts it to Inbox Scan: one inline attachment with size and hash."""
    return {
        "resourceType": "DocumentReference",
        "status": "current",
        "identifier": [{"system": "urn:consultcam:image", "value": "img-1"}],
        "type": {
            "coding": [{"system": "http://loinc.org", "code": "72170-4", "display": "Photographic image"}]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "date": "2026-12-03T15:04:05+13:00",
        "description": "Lesion A, left forearm",
        "content": [
            {
                "attachment": {
                    "contentType": content_type,
                    "data": base64.b64encode(data).decode(),
                    "size": len(data),
                    "hash": base64.b64encode(hashlib.sha1(data).digest()).decode(),
                    "title": "01-left-forearm.tiff",
                }
            }
        ],
        **changes,
    }


def post(http: httpx.Client, alex: AlexDouble, auth: dict[str, str], resource: Any) -> httpx.Response:
    """POST the resource to /FHIR/{its type} as application/fhir+json with the `auth` headers."""
    body = json.dumps(resource).encode()
    headers = {**auth, "Content-Type": "application/fhir+json"}
    return http.post(f"{alex.fhir_url}/{resource['resourceType']}", content=body, headers=headers)


def diagnostics(answer: httpx.Response) -> str:
    """The first issue's diagnostics of an OperationOutcome answer (asserting it is one)."""
    body = answer.json()
    assert body["resourceType"] == "OperationOutcome"
    return str(body["issue"][0]["diagnostics"])


def media(patient_id: str, **changes: Any) -> dict[str, Any]:
    """A Media as the `?resource=Media` commit posts it: identifier, subject, an inline JPEG."""
    jpeg = image("JPEG")
    return {
        "resourceType": "Media",
        "identifier": [{"system": "urn:consultcam:image", "value": "img-1"}],
        "status": "completed",
        "subject": {"reference": f"Patient/{patient_id}", "identifier": {"system": NHI_SYSTEM, "value": NHI}},
        "content": {"contentType": "image/jpeg", "data": base64.b64encode(jpeg).decode(), "size": len(jpeg)},
        **changes,
    }
