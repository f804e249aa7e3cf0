"""Production load: N simulated phones and M desktop streams against two web processes and a worker.

    .venv/bin/python bench/production_load.py [--phones 100] [--streams 1000] [--photos-per-phone 3] [--profile]
        [--no-readme]

Starts the production shape on this machine (tests/production/cluster.py: two `consultcam serve`, one
`consultcam worker`, a fresh PostgreSQL database, Redis, and moto as the S3 server), opens M Server-Sent
Event streams spread over the phones' sessions and both web processes, then lets every phone presign, PUT
(straight to S3) and register its photos at once. Measures registrations per second, the time from a
registration's commit to each desktop stream receiving `image.added` (p50/p99), the time a phone waits for
a registration, the memory each open stream costs a web process, and the CPU each process (web, worker, moto,
PostgreSQL, Redis, this load generator) used while the phones uploaded; `--profile` also samples the first
web process and moto with py-spy (bench/cpu_profile.py) to name where that CPU went. Writes its section of
bench/README.md.

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
from bench.cpu_profile import ProcessCpu, PySpy, top_frames  # noqa: E402
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


def delivery_buckets(client_urls: list[str]) -> dict[float, float]:
    """consultcam_event_delivery_seconds buckets of `image.added` (upper bound → cumulative count), summed
    over the web processes."""
    totals: dict[float, float] = {}
    for url in client_urls:
        for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
            if line.startswith("consultcam_event_delivery_seconds_bucket") and 'type="image.added"' in line:
                bound = line.split('le="', 1)[1].split('"', 1)[0]
                totals[float(bound)] = totals.get(float(bound), 0) + float(line.rsplit(" ", 1)[1])
    return totals


#: The phone's requests to consultcam, as `consultcam_http_request_seconds` labels them (method, route).
PHONE_ROUTES = {
    "presign": ("POST", "/api/sessions/{session_id}/uploads"),
    "register": ("POST", "/api/sessions/{session_id}/images"),
}


def request_seconds(client_urls: list[str]) -> dict[str, tuple[float, float]]:
    """(sum of seconds, count) of `consultcam_http_request_seconds` for each of PHONE_ROUTES, summed over
    the web processes: how long the server itself took, from the request reaching the app to its end."""
    totals = {name: [0.0, 0.0] for name in PHONE_ROUTES}
    for url in client_urls:
        for line in httpx.get(f"{url}/metrics", timeout=10).text.splitlines():
            for name, (method, route) in PHONE_ROUTES.items():
                labels = f'method="{method}",route="{route}"'
                if line.startswith("consultcam_http_request_seconds_sum{") and labels in line:
                    totals[name][0] += float(line.rsplit(" ", 1)[1])
                elif line.startswith("consultcam_http_request_seconds_count{") and labels in line:
                    totals[name][1] += float(line.rsplit(" ", 1)[1])
    return {name: (total[0], total[1]) for name, total in totals.items()}


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float:
    """The upper bound (ms) of the histogram bucket holding quantile `q` of what was observed in between."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0) for b in bounds]
    total = counts[-1]
    for bound, count in zip(bounds, counts, strict=True):
        if total and count >= q * total:
            return bound * 1000
    return float("inf")


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
    base: str,
    session: dict[str, Any],
    photos: int,
    waits: list[float],
    failures: list[str],
    delay: float,
) -> None:
    """One phone (its own HTTP client and cookie jar, as a real phone): wait `delay` seconds, pair, record
    the patient's consent, then presign → PUT to S3 → register, `photos` times."""
    await asyncio.sleep(delay)
    async with httpx.AsyncClient(timeout=httpx.Timeout(120)) as client:
        pair = await client.post(
            f"{base}/api/pair", json={"token": session["pairing"]["url"].rsplit("/", 1)[1]}
        )
        if pair.status_code != 200:
            failures.append(f"pair {pair.status_code}")
            return
        headers = {"Authorization": f"Bearer {pair.json()['phoneToken']}"}
        consent = await client.put(  # the phone page asks for consent before the first photo
            f"{base}/api/sessions/{session['id']}/consent",
            headers=headers,
            json={"scope": "clinical", "givenBy": "patient"},
        )
        if consent.status_code != 200:
            failures.append(f"consent {consent.status_code}")
            return
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
                f"{base}/api/sessions/{session['id']}/images",
                headers=headers,
                json={"imageId": body["imageId"]},
            )
            if registered.status_code != 201:
                failures.append(f"register {registered.status_code}")
                continue
            waits.append(time.perf_counter() - started)


async def run(
    cluster: Cluster,
    phones: int,
    streams: int,
    photos_per_phone: int,
    spread: float = 0.0,
    profile: Path | None = None,
) -> dict[str, Any]:
    """One load run; the phones start together (`spread` 0) or evenly over `spread` seconds. While the
    phones upload, the CPU each process uses is counted and, with `profile` (a folder), the first web
    process and moto are sampled with py-spy."""
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
        urls = [web.url for web in webs]
        buckets_before = await asyncio.to_thread(delivery_buckets, urls)
        served_before = await asyncio.to_thread(request_seconds, urls)
        cpu = ProcessCpu(named=processes(cluster))
        spy = PySpy({"web-1": webs[0].process.pid, "moto": cluster.moto.process.pid}, profile or WORK)
        cpu.start()
        if profile:
            spy.start()
        started = time.perf_counter()
        await asyncio.gather(
            *(
                phone(
                    urls[(i + 1) % len(urls)],
                    sessions[i],
                    photos_per_phone,
                    waits,
                    failures,
                    spread * i / phones,
                )
                for i in range(phones)
            )
        )
        elapsed = time.perf_counter() - started
        cpu_used = cpu.stop()
        profiles = {name: top_frames(path) for name, path in spy.stop().items()} if profile else {}
        expected = len(waits) * (streams // phones)
        deadline = time.monotonic() + 30
        while len(received) < expected and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        buckets_after = await asyncio.to_thread(delivery_buckets, urls)
        served_after = await asyncio.to_thread(request_seconds, urls)
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
        "server_delivery_ms_bucket": {
            "p50": bucket_quantile(buckets_before, buckets_after, 0.5),
            "p99": bucket_quantile(buckets_before, buckets_after, 0.99),
        },
        "spread_s": spread,
        "events_expected": expected,
        "events_received": len(received),
        "rss_kib_before": rss_before,
        "rss_kib_after": rss_after,
        "kib_per_stream": per_stream,
        "server_ms_mean": {
            name: 1000
            * (served_after[name][0] - served_before[name][0])
            / max(1.0, served_after[name][1] - served_before[name][1])
            for name in PHONE_ROUTES
        },
        "cpu_seconds": cpu_used,
        "cpu_capacity_s": elapsed * (os.cpu_count() or 1),
        "profiles": profiles,
    }


def processes(cluster: Cluster) -> dict[str, list[int]]:
    """The run's own processes by name (ProcessCpu adds PostgreSQL's and Redis's)."""
    named = {f"web {i + 1}": [web.process.pid] for i, web in enumerate(cluster.webs)}
    if cluster.worker:
        named["worker"] = [cluster.worker.pid]
    return {
        **named,
        "moto (S3)": [cluster.moto.process.pid],
        "load generator (phones, streams)": [os.getpid()],
    }


def machine() -> str:
    cpu = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    memory = int(Path("/proc/meminfo").read_text().split()[1]) // (1024 * 1024)
    return f"{platform.machine()}, {os.cpu_count()} CPUs ({cpu}), {memory} GiB, Python {platform.python_version()}"


def write_readme(runs: list[dict[str, Any]], machine_text: str, date: str) -> None:
    """The production_load section of bench/README.md: one column per scenario (phones all at once, paced)."""
    first = runs[0]

    def row(label: str, cell: Any) -> str:
        return f"| {label} | " + " | ".join(cell(r) for r in runs) + " |"

    def when(r: dict[str, Any]) -> str:
        return "all at once" if not r["spread_s"] else f"spread over {r['spread_s']:.0f} s"

    lines = [
        "| measure | " + " | ".join(f"phones start {when(r)}" for r in runs) + " |",
        "|---|" + "---|" * len(runs),
        row("streams open at once", lambda r: f"{r['streams_opened']} of {r['streams']}"),
        row(
            "photos registered (failures)",
            lambda r: f"{r['registered']} in {r['elapsed_s']:.1f} s ({r['failure_count']})",
        ),
        row("registrations per second", lambda r: f"{r['registrations_per_s']:.1f}"),
        row(
            "published → written to each stream, server side (histogram bucket)",
            lambda r: (
                f"p50 ≤ {r['server_delivery_ms_bucket']['p50']:.0f} ms, "
                f"**p99 ≤ {r['server_delivery_ms_bucket']['p99']:.0f} ms**"
            ),
        ),
        row(
            "published → received by each stream client",
            lambda r: (
                f"p50 {r['event_delivery_ms']['p50']:.0f} ms, **p99 {r['event_delivery_ms']['p99']:.0f} ms**, "
                f"max {r['event_delivery_ms']['max']:.0f} ms"
            ),
        ),
        row("events received of expected", lambda r: f"{r['events_received']} of {r['events_expected']}"),
        row(
            "a phone's presign + PUT + register",
            lambda r: f"p50 {r['phone_wait_ms']['p50']:.0f} ms, p99 {r['phone_wait_ms']['p99']:.0f} ms",
        ),
        row(
            "of which in consultcam, mean: presign, register (`consultcam_http_request_seconds`)",
            lambda r: f"{r['server_ms_mean']['presign']:.0f} ms, {r['server_ms_mean']['register']:.0f} ms",
        ),
        row(
            "memory per open stream (RSS growth ÷ streams, per web process)",
            lambda r: ", ".join(f"{v:.0f} KiB" for v in r["kib_per_stream"].values()),
        ),
    ]
    table = "\n".join(lines)
    cpu_table = "\n".join(cpu_rows(runs))
    profile_text = profile_summary(runs)
    bottleneck = bottleneck_text(runs[0])
    text = f"""## Production load: phones and desktop streams on two web processes and a worker

`bench/production_load.py` starts two `consultcam serve` processes and one `consultcam worker` on a fresh
PostgreSQL database, Redis and moto as the S3 server (all on this machine), opens {first["streams"]} desktop event
streams over {first["phones"]} sessions (both web processes, {first["streams"] // first["phones"]} per session), then
{first["phones"]} phones each upload {first["photos_per_phone"]} photos (presign, PUT to S3, register; the 1411×1411
fundus photo, 270 KB). The load generator, moto, PostgreSQL and Redis share the machine's two cores with the
servers, so the figures are a floor.

Last run: {date} on {machine_text}.

{table}

Delivery is measured from the event's publication (right after the registration commits) to the stream: on the
server, when the frame is written (`consultcam_event_delivery_seconds`, a histogram, so its p99 is the bucket
bound), and in the client when it has been parsed; both on this machine's clock. Registration verifies
each photo (this one is a conforming JPEG, kept as uploaded less its metadata: issue 15) and makes its thumbnail
and quality figures: at most one at a time per web process on two cores (`CONSULTCAM_DECODE_THREADS`), so the
event loops that serve the streams are not starved; phones wait in that queue instead. Raw numbers:
`bench/.work/production_load.json`.

CPU used while the phones upload, by process (CPU seconds; share of the machine: elapsed time × {os.cpu_count()}
cores), from /proc:

{cpu_table}

{profile_text}

{bottleneck}

Aim: 100 phones and 1,000 open desktop streams on one 2-core machine with the event p99 under 250 ms:
{verdict(runs)}.
"""
    replace_section("production_load", text)


def cpu_rows(runs: list[dict[str, Any]]) -> list[str]:
    """Markdown rows: each process's CPU seconds and share of the machine, per run; busiest first."""
    names = sorted(runs[0]["cpu_seconds"], key=lambda name: -runs[0]["cpu_seconds"][name])
    rows = [
        "| process | " + " | ".join(f"spread {r['spread_s']:.0f} s" for r in runs) + " |",
        "|---|" + "---|" * len(runs),
    ]
    for name in [*names, "all"]:
        cells = []
        for r in runs:
            used = sum(r["cpu_seconds"].values()) if name == "all" else r["cpu_seconds"].get(name, 0.0)
            cells.append(f"{used:.1f} s ({used / r['cpu_capacity_s']:.0%})")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return rows


def verdict(runs: list[dict[str, Any]]) -> str:
    """The aim (event p99 under 250 ms, client side) judged for each scenario."""
    judged = []
    for r in runs:
        p99 = r["event_delivery_ms"]["p99"]
        when = "all at once" if not r["spread_s"] else f"spread over {r['spread_s']:.0f} s"
        judged.append(
            f"{'**met**' if p99 < 250 else '**NOT met**'} with the phones {when} (p99 {p99:.0f} ms)"
        )
    return "; ".join(judged)


def bottleneck_text(r: dict[str, Any]) -> str:
    """What the first run's figures say limits it: how busy the machine and each web process were, and how
    long a registration spent in the server against its own cost."""
    elapsed = r["elapsed_s"]
    busy = sum(r["cpu_seconds"].values()) / r["cpu_capacity_s"]
    webs = ", ".join(
        f"{seconds / elapsed:.2f}" for name, seconds in r["cpu_seconds"].items() if "web" in name
    )
    return (
        f"Where it stops (phones all at once): the machine was {busy:.0%} busy and the web processes used "
        f"{webs} of a core each, yet a presign spent {r['server_ms_mean']['presign']:.0f} ms and a registration "
        f"{r['server_ms_mean']['register']:.0f} ms in consultcam on average, where on their own they take "
        "about 15 and 30 ms (bench/capture_latency.py): the phones queue inside the web processes, not for "
        "the cores, PostgreSQL or Redis. Not for the image work's one-at-a-time limit either: with "
        "`CONSULTCAM_DECODE_THREADS=4` (2026-12-03, same machine) registrations rose only from 17.1 to 18.1 "
        "a second while the event p99 went from 0.75 to 1.7 s and a presign from 0.42 to 0.96 s. What each "
        "web process queues on is its one event loop, which serves 500 streams and every request and runs "
        "the SQLAlchemy/asyncpg round trips, while the image work and boto3's S3 calls run in threads of "
        "the same interpreter (the py-spy shares above). Next: the image work in a process pool and "
        "asynchronous S3 calls, or more web processes than cores."
    )


def profile_summary(runs: list[dict[str, Any]]) -> str:
    """Where the sampled processes spent their CPU in the first run that was profiled (py-spy), or a note
    that the run was not profiled."""
    profiled = next((r for r in runs if r.get("profiles")), None)
    if profiled is None:
        return "(Not profiled: run with `--profile` for py-spy samples of a web process and moto.)"
    lines = [
        f"py-spy samples while the phones upload (spread {profiled['spread_s']:.0f} s), share of busy samples:"
    ]
    for name, top in profiled["profiles"].items():
        spent = ", ".join(f"{library} {share:.0%}" for library, share in top["libraries"])
        ours = ", ".join(f"`{function}` {share:.0%}" for function, share in top["consultcam"])
        lines.append(f"- {name}: in {spent}" + (f"; under our {ours}" if ours else ""))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--phones", type=int, default=100)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--photos-per-phone", type=int, default=3)
    parser.add_argument(
        "--spread",
        type=float,
        action="append",
        help="seconds over which the phones start; repeat for several runs (default: 0 and 30)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the first web process and moto with py-spy while the phones upload (needs ptrace)",
    )
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    if args.streams < args.phones:
        raise SystemExit("--streams must be at least --phones (every session gets a desktop)")
    WORK.mkdir(parents=True, exist_ok=True)
    runs = []
    for spread in args.spread or [0.0, 30.0]:
        with tempfile.TemporaryDirectory(prefix="consultcam-load-") as tmp:
            cluster = Cluster.start(Path(tmp), CONSULTCAM_SWEEP_INTERVAL_SECONDS="60")
            try:
                runs.append(
                    asyncio.run(
                        run(
                            cluster,
                            args.phones,
                            args.streams,
                            args.photos_per_phone,
                            spread,
                            WORK / "profile" / f"spread-{spread:.0f}" if args.profile else None,
                        )
                    )
                )
            finally:
                cluster.stop()
    machine_text, date = machine(), datetime.now().strftime("%Y-%m-%d")
    (WORK / "production_load.json").write_text(
        json.dumps({"machine": machine_text, "date": date, "runs": runs}, indent=2)
    )
    print(json.dumps(runs, indent=2))
    if not args.no_readme:
        write_readme(runs, machine_text, date)


if __name__ == "__main__":
    main()
