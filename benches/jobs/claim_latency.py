"""Job claim latency: the time from sending `POST /api/jobs` to the first `job_update` event that
shows the job claimed by a worker (status `running`), as a stock Socket.IO client of the owner
sees it. One job at a time; each waits for the previous to end.

Usage: claim_latency.py BASE_URL TOKEN INPUT_FILE_ID RUNS
Prints one line: RESULT n=… post_p50_ms=… claim_p50_ms=… claim_p90_ms=… claim_p99_ms=… claim_max_ms=…
where post_* is the POST's own round trip (the reference: the answer the client waits for).
"""
import json
import sys
import threading
import time
import urllib.request

import socketio

base, token, input_id, runs = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
events = {}
cond = threading.Condition()


def on_job(data):
    with cond:
        seen = events.setdefault(data["id"], [])
        seen.append((time.monotonic(), data["status"]))
        cond.notify_all()


sio = socketio.Client(reconnection=False)
sio.on("job_update", on_job)
sio.connect(base, transports=["websocket"], wait_timeout=10)
ack = sio.call("authenticate", {"token": token}, timeout=10)
assert ack and ack.get("ok"), ack


def post_job():
    body = json.dumps({"kind": "bar_grouping", "input_id": input_id}).encode()
    req = urllib.request.Request(base + "/api/jobs", data=body, method="POST", headers={
        "Authorization": "Bearer " + token, "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())["id"]


def wait_for(job_id, pred, timeout=30):
    deadline = time.monotonic() + timeout
    with cond:
        while True:
            for t, status in events.get(job_id, []):
                if pred(status):
                    return t
            left = deadline - time.monotonic()
            if left <= 0:
                raise SystemExit(f"job {job_id}: no matching event within {timeout}s")
            cond.wait(left)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


post_ms, claim_ms = [], []
for i in range(runs + 5):
    t0 = time.monotonic()
    job_id = post_job()
    t_post = time.monotonic()
    t_claim = wait_for(job_id, lambda s: s != "queued")
    wait_for(job_id, lambda s: s in ("completed", "failed", "cancelled"))
    if i >= 5:  # the first few warm the connection pool and the worker
        post_ms.append((t_post - t0) * 1000)
        claim_ms.append((t_claim - t0) * 1000)
sio.disconnect()
print("RESULT n=%d post_p50_ms=%.1f claim_p50_ms=%.1f claim_p90_ms=%.1f claim_p99_ms=%.1f claim_max_ms=%.1f" % (
    len(claim_ms), pct(post_ms, 50), pct(claim_ms, 50), pct(claim_ms, 90), pct(claim_ms, 99), max(claim_ms)))
