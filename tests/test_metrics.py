"""`/metrics`: the figures an operator graphs (requests, uploads, events, streams, commits, jobs)."""

from __future__ import annotations

import re

from tests.conftest import jpeg_bytes, pair_phone, start_session, upload


def figure(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text format (0 when absent)."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if match and ",".join(sorted((match.group(1) or "").split(","))) == wanted:
            return float(match.group(2))
    return 0.0


async def test_metrics_count_uploads_events_commits_and_requests(clinician, new_client, anonymous):
    before = (await anonymous.get("/metrics")).text
    session = await start_session(clinician)
    phone = await pair_phone(new_client, session)
    await upload(phone, session["id"], jpeg_bytes())
    await phone.post(
        f"/api/sessions/{session['id']}/uploads", json={"contentType": "image/svg+xml", "sizeBytes": 9}
    )
    await clinician.post(f"/api/sessions/{session['id']}/commit", json={"all": True})

    response = await anonymous.get("/metrics")
    after = response.text
    assert response.headers["content-type"].startswith("text/plain")

    def grew(name: str, by: float = 1, **labels: str) -> None:
        assert figure(after, name, **labels) - figure(before, name, **labels) == by, (name, labels)

    grew("consultcam_images_registered_total", source="phone")
    grew("consultcam_events_published_total", type="image.added")
    grew("consultcam_events_published_total", type="session.committed")
    grew("consultcam_commits_total", connector="export", outcome="committed")
    grew(
        "consultcam_http_requests_total",
        method="POST",
        route="/api/sessions/{session_id}/uploads",
        status="415",
    )
    assert "sessions/" + session["id"] not in after  # ids never become labels
