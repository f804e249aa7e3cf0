"""Production load: N simulated phones and M desktop streams against two web processes and a worker.

    .venv/bin/python bench/production_load.py [--phones 100] [--streams 1000] [--photos-per-phone 3] [--no-readme]

Starts the production shape on this machine (tests/production/cluster.py: two `consultcam serve`, one
`consultcam worker`, a fresh PostgreSQL database, Redis, and moto as the S3 server), opens M Server-Sent
Event streams spread over the phones' sessions and both web processes, then lets every phone presign, PUT
(straight to S3) and register its photos at once. Measures registrations per second, the time from a
registration's commit to each desktop stream receiving `image.added` (p50/p99), the time a phone waits for
a registration, and the memory each open stream costs a web process. Writes its section of bench/README.md.

The load generator runs on the same two cores as the servers, so the figures are a floor, not a ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.readme import replace_section  # noqa: E402
from tests.conftest import PATIENT  # noqa: E402
from tests.production.cluster import Cluster  # noqa: E402

PHOTO = (ROOT / "tests" / "photos" / "fundus-left-eye.jpg").read_bytes()
WORK = ROOT / "bench" / ".work"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def rss_kib(pid: int) -> int:
    """Resident memory of a process (Linux /proc), KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


async def open_stream(
    client: httpx.AsyncClient,
    url: str,
    token: str,
    received: list[tuple[str, float, float]],
    opened: list[int],
) -> None:
    """One desktop: an SSE stream; every image.added is kept as (image id, published at, received at)."""
    async with client.stream("GET", url, headers={"Authorization": f"Bearer {token}"}) as response:
        opened.append(response.status_code)
        event, data = "", ""
        async for line in response.aiter_lines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:"):
                data = line[5:].strip()
            elif not line and event == "image.added":
                body = json.loads(data)
                published = datetime.fromisoformat(body["at"]).timestamp()
                received.append((body["data"]["image"]["id"], published, time.time()))
                event = data = ""
            elif not line:
                event = data = ""


async def phone(
    client: httpx.AsyncClient,
    base: str,
    session: dict[str, Any],
    photos: int,
    waits: list[float],
    failures: list[str],
) -> None:
    """One phone: pair, then presign → PUT to S3 → register, `photos` times."""
    pair = await client.post(f"{base}/api/pair", json={"token": session["pairing"]["url"].rsplit("/", 1)[1]})
    if pair.status_code != 200:
        failures.append(f"pair {pair.status_code}")
        return
    headers = {"Authorization": f"Bearer {pair.json()['phoneToken']}"}
    for _ in range(photos):
        started = time.perf_counter()
        presign = await client.post(
            f"{base}/api/sessions/{session['id']}/uploads",
            headers=headers,
            json={"contentType": "image/jpeg", "sizeBytes": len(PHOTO)},
        )
        if presign.status_code != 201:
            failures.append(f"presign {presign.status_code}")
            continue
        body = presign.json()
        put = await client.put(body["uploadUrl"], content=PHOTO, headers=body["headers"])
        if put.status_code != 200:
            failures.append(f"put {put.status_code}")
            continue
        registered = await client.post(
            f"{base}/api/sessions/{session['id']}/images", headers=headers, json={"imageId": body["imageId"]}
        )
        if registered.status_code != 201:
            failures.append(f"register {registered.status_code}")
            continue
        waits.append(time.perf_counter() - started)


async def run(cluster: Cluster, phones: int, streams: int, photos_per_phone: int) -> dict[str, Any]:
    webs = cluster.webs
    limits = httpx.Limits(max_connections=streams + phones * 2 + 50, max_keepalive_connections=phones * 2)
    timeout = httpx.Timeout(60, read=300)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        sessions = []
        for index in range(phones):
            web = webs[index % len(webs)]
            response = await client.post(
                f"{web.url}/api/sessions",
                headers={"Authorization": f"Bearer {web.token}"},
                json={"encounterId": f"load-{index}", "patient": PATIENT},
            )
            response.raise_for_status()
            sessions.append(response.json())
        rss_before = {web.process.pid: rss_kib(web.process.pid) for web in webs}
        received: list[tuple[str, float, float]] = []
        opened: list[int] = []
        readers = []
        for index in range(streams):
            web = webs[index % len(webs)]
            session = sessions[index % phones]
            url = f"{web.url}/api/sessions/{session['id']}/events"
            readers.append(asyncio.create_task(open_stream(client, url, web.token, received, opened)))
            if index % 50 == 49:
                await asyncio.sleep(0.05)  # open them as pages would, not in one burst
        deadline = time.monotonic() + 120
        while len(opened) < streams and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(2)
        rss_after = {web.process.pid: rss_kib(web.process.pid) for web in webs}

        waits: list[float] = []
        failures: list[str] = []
        started = time.perf_counter()
        await asyncio.gather(
            *(
                phone(client, webs[(i + 1) % len(webs)].url, sessions[i], photos_per_phone, waits, failures)
                for i in range(phones)
            )
        )
        elapsed = time.perf_counter() - started
        expected = len(waits) * (streams // phones)
        deadline = time.monotonic() + 30
        while len(received) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)

    delivery_ms = [(got - published) * 1000 for _, published, got in received]
    per_stream = {pid: (rss_after[pid] - rss_before[pid]) / (streams / len(webs)) for pid in rss_before}
    return {
        "phones": phones,
        "streams": streams,
        "photos_per_phone": photos_per_phone,
        "streams_opened": sum(1 for s in opened if s == 200),
        "registered": len(waits),
        "failures": failures[:20],
        "failure_count": len(failures),
        "elapsed_s": elapsed,
        "registrations_per_s": len(waits) / elapsed,
        "phone_wait_ms": summary([w * 1000 for w in waits]),
        "event_delivery_ms": summary(delivery_ms),
        "events_expected": expected,
        "events_received": len(received),
        "rss_kib_before": rss_before,
        "rss_kib_after": rss_after,
        "kib_per_stream": per_stream,
    }


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
    return f"{platform.machine()}, {os.cpu_count()} CPUs ({cpu}), {memory} GiB, Python {platform.python_version()}"


def write_readme(results: dict[str, Any]) -> None:
    d, w = results["event_delivery_ms"], results["phone_wait_ms"]
    kib = results["kib_per_stream"]
    ok = "met" if d["p99"] < 250 else "NOT met"
    text = f"""## Production load: phones and desktop streams on two web processes and a worker

`bench/production_load.py` starts two `consultcam serve` processes and one `consultcam worker` on a fresh
PostgreSQL database, Redis and moto as the S3 server (all on this machine), opens {results["streams"]} desktop
event streams over {results["phones"]} sessions (both web processes, {results["streams"] // results["phones"]} per
session), then {results["phones"]} phones at once each upload {results["photos_per_phone"]} photos (presign, PUT to S3,
register; the 1411×1411 fundus photo, 270 KB). The load generator shares the machine's cores with the servers.

Last run: {results["date"]} on {results["machine"]}.

| measure | value |
|---|---|
| streams open at once | {results["streams_opened"]} of {results["streams"]} |
| photos registered | {results["registered"]} in {results["elapsed_s"]:.1f} s: **{results["registrations_per_s"]:.1f} per second** (failures: {results["failure_count"]}) |
| registration committed → every desktop stream has `image.added` | p50 {d["p50"]:.0f} ms, **p99 {d["p99"]:.0f} ms**, max {d["max"]:.0f} ms (n = {d["n"]} of {results["events_expected"]} expected) |
| a phone's presign + PUT + register | p50 {w["p50"]:.0f} ms, p99 {w["p99"]:.0f} ms |
| memory per open stream (web process RSS growth ÷ its streams) | {", ".join(f"{v:.1f} KiB" for v in kib.values())} |

Aim: 100 phones and 1,000 open desktop streams on one 2-core machine with the event p99 under 250 ms: **{ok}**.
The delivery time is measured from the event's publication (right after the registration commits) to its
arrival in the stream client, both on this machine's clock. Raw numbers: `bench/.work/production_load.json`.
"""
    replace_section("production_load", text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phones", type=int, default=100)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--photos-per-phone", type=int, default=3)
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    if args.streams < args.phones:
        raise SystemExit("--streams must be at least --phones (every session gets a desktop)")
    WORK.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="consultcam-load-") as tmp:
        cluster = Cluster.start(Path(tmp), CONSULTCAM_SWEEP_INTERVAL_SECONDS="60")
        try:
            results = asyncio.run(run(cluster, args.phones, args.streams, args.photos_per_phone))
        finally:
            cluster.stop()
    results["machine"] = machine()
    results["date"] = datetime.now().strftime("%Y-%m-%d")
    (WORK / "production_load.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))
    if not args.no_readme:
        write_readme(results)


if __name__ == "__main__":
    main()
