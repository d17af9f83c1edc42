"""A stock python-socketio client that records what the server sends.

Usage: sio_recorder.py URL [TOKEN]    (or with ETX_COOKIE set: connect with that Cookie
header; ETX_ORIGIN adds an Origin header)

Connects to URL, authenticates with TOKEN (when given), subscribes to the `prices` channel and
prints one JSON line per event received: {"event": name, "data": payload}. The line
{"event": "ready"} follows once authentication and the subscription are acknowledged. It
stops when standard input closes.
"""
import json
import os
import sys
import threading

import socketio

url = sys.argv[1]
token = sys.argv[2] if len(sys.argv) > 2 else None
out_lock = threading.Lock()


def emit_line(event, data=None):
    with out_lock:
        sys.stdout.write(json.dumps({"event": event, "data": data}) + "\n")
        sys.stdout.flush()


sio = socketio.Client(reconnection=False)

for name in ("price_update", "transaction_update", "wallet_update", "notification",
             "announcement", "job_update", "auth_error", "authenticated", "pong"):
    sio.on(name, (lambda n: lambda data=None: emit_line(n, data))(name))

cookie = os.environ.get("ETX_COOKIE")
headers = {"Cookie": cookie} if cookie else {}
if os.environ.get("ETX_ORIGIN"):
    headers["Origin"] = os.environ["ETX_ORIGIN"]
sio.connect(url, headers=headers, transports=["websocket"], wait_timeout=10)
if token:
    ack = sio.call("authenticate", {"token": token}, timeout=10)
    if not ack or not ack.get("ok"):
        emit_line("auth_failed", ack)
ack = sio.call("subscribe", {"channels": ["prices"]}, timeout=10)
emit_line("subscribed", ack)
pong = sio.call("ping", {}, timeout=10)
emit_line("ready", pong)

sys.stdin.read()
sio.disconnect()
