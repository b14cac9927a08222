"""Throughput of the verification service: `make bench-sharing` (also run by `make bench`).

Builds a warehouse of N synthetic persons (golden records + certificates, through the real
build and loader) in a temporary folder, registers a client with its approvals, starts
`govdata serve` (uvicorn, one process) and drives POST /verify from a separate load generator
process — Debian's `wrk` with a Lua script when installed, else a small asyncio client —
bounded by a request count and a time limit. Reports requests/s and latency percentiles against
the targets (>= 1,000 requests/s, p99 <= 50 ms), then checks that every call reached the
hash-chained request log and that the chain is intact.

    python -m govdata.bench_sharing [--persons 20000] [--requests 30000] [--seconds 20] [--connections 4]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

TARGET_RPS = 1_000
TARGET_P99_MS = 50.0
KEY_HEX = "6b" * 32
DISTINCT_BODIES = 2_000

LUA = r"""
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
local limit = tonumber(os.getenv("BENCH_PER_THREAD"))
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-Api-Key"] = os.getenv("BENCH_KEY")
local i, n = 0, 0
request = function()
  i = i + 1
  return wrk.format(nil, "/verify", nil, bodies[(i % #bodies) + 1])
end
response = function(status, headers, body)
  n = n + 1
  if n >= limit then wrk.thread:stop() end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH_JSON {"requests": %d, "duration_us": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "errors": %d, "non_2xx": %d}\n', summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max,
    e.connect + e.read + e.write + e.timeout, e.status))
end
"""


def _id_numbers(n: int, rng: random.Random) -> list[str]:
    from stdnum.cn import ric

    out, seen = [], set()
    start = date(1940, 1, 1)
    while len(out) < n:
        born = start + timedelta(days=rng.randrange(365 * 65))
        base = f"110105{born:%Y%m%d}{rng.randrange(1000):03d}"
        if base not in seen:
            seen.add(base)
            out.append(base + ric.calc_check_digit(base))
    return out


def build_warehouse(url: str, persons: int, seed: int = 7) -> list[dict]:
    """Load N persons and one resident ID card each; returns [{id_number, name, birth_date, cert}]."""
    import pandas as pd

    from govdata.standards.registry import load_standards
    from govdata.warehouse.build import build_tables
    from govdata.warehouse.load import init_warehouse, load_tables

    rng = random.Random(seed)
    ids = _id_numbers(persons, rng)
    surnames, given = "王李张刘陈杨黄赵吴周", "伟芳娜敏静丽强磊军洋勇艳杰涛明超秀英"
    names = [rng.choice(surnames) + "".join(rng.choice(given) for _ in range(rng.choice((1, 2)))) for _ in ids]
    births = [date(int(i[6:10]), int(i[10:12]), int(i[12:14])) for i in ids]
    pid = [f"P{k:012x}" for k in range(persons)]
    golden = pd.DataFrame({"person_id": pid, "id_number": ids, "name": names, "sex": [str(2 - int(i[16]) % 2) for i in ids],
                           "birth_date": births, "address": [f"北京市朝阳区建国路{k % 500 + 1}号" for k in range(persons)],
                           "region_code": "110105", "record_count": 1, "source_count": 1,
                           "lineage": '{"name": "gongan", "birth_date": "gongan", "address": "minzheng"}'})
    xref = pd.DataFrame({"source_system": "gongan", "source_record_id": [str(k) for k in range(persons)],
                         "person_id": pid, "match_rule": "id", "match_score": 1.0})
    certs = [f"RID-{k:08d}" for k in range(persons)]
    std = {
        "gongan": pd.DataFrame({"source_system": "gongan", "source_record_id": xref["source_record_id"],
                                "kind": "person", "id_number": ids, "name": names, "birth_date": births}),
        "zhengzhao": pd.DataFrame({"source_system": "zhengzhao", "source_record_id": [f"c{k}" for k in range(persons)],
                                   "kind": "certificate", "certificate_no": certs, "certificate_type": "resident_id",
                                   "holder_id_number": ids, "holder_uscc": None, "issuer": "公安局",
                                   "issue_date": date(2020, 1, 1), "expiry_date": date.today() + timedelta(days=3650),
                                   "status": "valid"}),
    }
    quarantine = pd.DataFrame(columns=["source_system", "source_record_id", "element", "reason_code", "masked_value",
                                       "row_rejected", "message"])
    tables = build_tables({"person_xref": xref, "person_golden": golden}, std, quarantine, load_standards(),
                          bytes.fromhex(KEY_HEX), "bench")
    now = pd.Timestamp.now().floor("s")
    tables["etl_run"] = pd.DataFrame({"run_id": ["bench"], "started_at": [now], "finished_at": [now],
                                      "status": ["success"], "counts": ["{}"]})
    init_warehouse(url)
    load_tables(url, tables, "bench")
    return [{"id_number": i, "name": n, "birth_date": b.isoformat(), "cert": c}
            for i, n, b, c in zip(ids, names, births, certs)]


def request_bodies(people: list[dict], n: int, rng: random.Random) -> list[str]:
    """Verification requests as the service hall sends them: mostly true claims, some false."""
    out = []
    for p in rng.sample(people, min(n, len(people))):
        claims = {"name": p["name"], "birth_date": p["birth_date"], "resident_id_no": p["cert"]}
        if rng.random() < 0.2:
            claims["name"] = claims["name"] + "某"
        out.append(json.dumps({"id_number": p["id_number"], "service_item": "S0002", "claims": claims},
                              ensure_ascii=False, separators=(",", ":")))
    return out


# --- load generators ----------------------------------------------------------------------------
def run_wrk(base: str, key: str, bodies_file: Path, requests: int, seconds: int, connections: int,
            threads: int = 1) -> dict:
    folder = bodies_file.parent
    script = folder / "verify.lua"
    script.write_text(LUA)
    env = {**os.environ, "BENCH_BODIES": str(bodies_file), "BENCH_KEY": key,
           "BENCH_PER_THREAD": str(max(1, requests // threads))}
    res = subprocess.run(["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{seconds}s", "--timeout", "5s",
                          "-s", str(script), base], capture_output=True, text=True, env=env, timeout=seconds + 60)
    line = next((ln for ln in res.stdout.splitlines() if ln.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no result: {res.stdout[-1000:]} {res.stderr[-1000:]}")
    r = json.loads(line.split(" ", 1)[1])
    secs = r["duration_us"] / 1e6
    return {"generator": "wrk", "requests": r["requests"], "seconds": round(secs, 2),
            "requests_per_s": round(r["requests"] / secs, 1), "p50_ms": r["p50_us"] / 1000,
            "p90_ms": r["p90_us"] / 1000, "p99_ms": r["p99_us"] / 1000, "max_ms": r["max_us"] / 1000,
            "errors": r["errors"], "non_2xx": r["non_2xx"]}


async def _client(host: str, port: int, key: str, bodies: list[bytes], n: int, deadline: float, lat: list,
                  bad: list) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    head = f"POST /verify HTTP/1.1\r\nHost: {host}\r\nX-Api-Key: {key}\r\nContent-Type: application/json\r\n"
    i = random.randrange(len(bodies))
    try:
        for _ in range(n):
            if time.monotonic() > deadline:
                break
            body = bodies[i % len(bodies)]
            i += 1
            t = time.perf_counter()
            writer.write(head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
            status = await reader.readline()
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            lat.append(time.perf_counter() - t)
            if b" 200 " not in status:
                bad.append(status)
    finally:
        writer.close()


def python_load(base: str, key: str, bodies_file: Path, requests: int, seconds: int, connections: int) -> dict:
    """The asyncio generator, run in this (separate) process."""
    from urllib.parse import urlparse

    u = urlparse(base)
    bodies = [ln.encode() for ln in bodies_file.read_text(encoding="utf-8").splitlines()]
    lat: list[float] = []
    bad: list = []

    async def main():
        deadline = time.monotonic() + seconds
        per = max(1, requests // connections)
        await asyncio.gather(*(_client(u.hostname, u.port, key, bodies, per, deadline, lat, bad)
                               for _ in range(connections)))

    t = time.perf_counter()
    asyncio.run(main())
    secs = time.perf_counter() - t
    q = statistics.quantiles(lat, n=100) if len(lat) > 1 else [0.0] * 99
    return {"generator": "python-asyncio", "requests": len(lat), "seconds": round(secs, 2),
            "requests_per_s": round(len(lat) / secs, 1), "p50_ms": round(q[49] * 1000, 2),
            "p90_ms": round(q[89] * 1000, 2), "p99_ms": round(q[98] * 1000, 2), "max_ms": round(max(lat) * 1000, 2),
            "errors": 0, "non_2xx": len(bad)}


def generate_load(base: str, key: str, bodies_file: Path, requests: int, seconds: int, connections: int) -> dict:
    if shutil.which("wrk"):
        return run_wrk(base, key, bodies_file, requests, seconds, connections)
    cmd = [sys.executable, "-m", "govdata.bench_sharing", "--load-only", base, "--key", key, "--bodies",
           str(bodies_file), "--requests", str(requests), "--seconds", str(seconds), "--connections", str(connections)]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120,
                         env={**os.environ, "BENCH_KEY": key})
    return json.loads(res.stdout.strip().splitlines()[-1])


# --- the benchmark ------------------------------------------------------------------------------
def _wait(base: str, proc: subprocess.Popen, timeout: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"govdata serve exited: {proc.stdout.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.2)
    raise RuntimeError("govdata serve did not answer")


def bench(persons: int, requests: int, seconds: int, connections: int, keep: Path | None = None) -> dict:
    from govdata.sharing.log import verify_chain
    from govdata.sharing.store import add_client, approve, request_access

    os.environ["GOVDATA_TOKEN_KEY"] = KEY_HEX
    folder = Path(keep or tempfile.mkdtemp(prefix="govdata-bench-sharing-"))
    folder.mkdir(parents=True, exist_ok=True)
    url = f"duckdb:///{folder / 'warehouse.duckdb'}"
    t = time.perf_counter()
    people = build_warehouse(url, persons)
    build_s = time.perf_counter() - t
    _, key = add_client(url, "zhengwu", 1e9, who="bench")
    for resource in ("person_contact", "certificate_library"):
        req = request_access(url, resource, "zhengwu", "bench", date.today() + timedelta(days=1), who="bench")
        approve(url, req.request_id, "bench", who="bench")
    bodies_file = folder / "bodies.jsonl"
    bodies_file.write_text("\n".join(request_bodies(people, DISTINCT_BODIES, random.Random(1))) + "\n", encoding="utf-8")

    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "GOVDATA_HOME": str(folder), "GOVDATA_SHARE_REFRESH_SECONDS": "30"}
    govdata = str(Path(sys.executable).with_name("govdata"))
    proc = subprocess.Popen([govdata, "serve", "--port", str(port), "--warehouse", url], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        t = time.perf_counter()
        _wait(base, proc)
        start_s = time.perf_counter() - t
        generate_load(base, key, bodies_file, min(2_000, requests), 5, connections)   # warm-up
        result = generate_load(base, key, bodies_file, requests, seconds, connections)
    finally:
        proc.terminate()    # the service flushes its log on shutdown
        proc.wait(timeout=60)
    chain = verify_chain(url)
    result.update({"persons": persons, "connections": connections, "build_seconds": round(build_s, 1),
                   "server_start_seconds": round(start_s, 1), "log_rows": chain.rows, "log_intact": chain.intact,
                   "cores": os.cpu_count()})
    result["meets_targets"] = bool(result["requests_per_s"] >= TARGET_RPS and result["p99_ms"] <= TARGET_P99_MS
                                   and not result["errors"] and not result["non_2xx"] and chain.intact)
    if keep is None:
        shutil.rmtree(folder, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=20_000)
    ap.add_argument("--requests", type=int, default=200_000, help="at most this many measured requests "
                    "(wrk's duration runs on after the count: keep it above what the time allows)")
    ap.add_argument("--seconds", type=int, default=20, help="and at most this long")
    ap.add_argument("--connections", type=int, default=4)
    ap.add_argument("--keep", type=Path, help="build in this folder and keep it")
    ap.add_argument("--load-only", metavar="BASE_URL", help="(internal) run the asyncio generator against BASE_URL")
    ap.add_argument("--key", default=os.environ.get("BENCH_KEY", ""))
    ap.add_argument("--bodies", type=Path)
    args = ap.parse_args(argv)
    if args.load_only:
        print(json.dumps(python_load(args.load_only, args.key, args.bodies, args.requests, args.seconds,
                                     args.connections)))
        return 0
    r = bench(args.persons, args.requests, args.seconds, args.connections, args.keep)
    print(json.dumps(r, ensure_ascii=False))
    print(f"POST /verify: {r['requests_per_s']:,.0f} requests/s (target >= {TARGET_RPS:,}), "
          f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms (target <= {TARGET_P99_MS:.0f}), "
          f"{r['requests']:,} requests over {r['connections']} connections by {r['generator']}; "
          f"log {r['log_rows']:,} rows, chain {'intact' if r['log_intact'] else 'BROKEN'}: "
          f"{'targets met' if r['meets_targets'] else 'TARGETS MISSED'}")
    return 0 if r["meets_targets"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
