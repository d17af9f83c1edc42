"""A stock python-socketio client that records what the server sends.

Usage: sio_recorder.py URL [TOKEN]    (or with ETX_COOKIE set: connect with that Cookie
header; ETX_ORIGIN adds an Origin header)

Connects to URL, authenticates with TOKEN (when given), subscribes to the `prices` channel and
prints one JSON line per event received: {"event": name, "data": payload, "at": unix time in
seconds when it arrived}. The line {"event": "ready"} follows once authentication and the
subscription are acknowledged. It stops when standard input closes.

With ETX_RECONNECT=1 a lost connection is retried (every 0.2-1 s), each new connection
authenticated and subscribed again, announced by {"event": "reconnected"}.
"""
import json
import os
import sys
import threading
import time

import socketio

url = sys.argv[1]
token = sys.argv[2] if len(sys.argv) > 2 else None
out_lock = threading.Lock()


def emit_line(event, data=None):
    at = time.time()
    with out_lock:
        sys.stdout.write(json.dumps({"event": event, "data": data, "at": at}) + "\n")
        sys.stdout.flush()


reconnect = os.environ.get("ETX_RECONNECT") == "1"
sio = socketio.Client(reconnection=reconnect, reconnection_delay=0.2,
                      reconnection_delay_max=1, randomization_factor=0)
connected_before = threading.Event()


def sign_in():
    if token:
        ack = sio.call("authenticate", {"token": token}, timeout=10)
        if not ack or not ack.get("ok"):
            emit_line("auth_failed", ack)
    return sio.call("subscribe", {"channels": ["prices"]}, timeout=10)


def signed_in_again():
    try:
        sign_in()
        emit_line("reconnected")
    except Exception as e:  # the connection went again; the next connect retries
        emit_line("reconnect_failed", str(e))


@sio.on("connect")
def on_connect():
    # Handlers run on the client's reading thread: acknowledgements need it free.
    if connected_before.is_set():
        sio.start_background_task(signed_in_again)
    connected_before.set()


@sio.on("disconnect")
def on_disconnect(*reason):
    emit_line("disconnected", str(reason[0]) if reason else None)

for name in ("price_update", "transaction_update", "wallet_update", "notification",
             "announcement", "job_update", "auth_error", "authenticated", "pong"):
    sio.on(name, (lambda n: lambda data=None: emit_line(n, data))(name))

cookie = os.environ.get("ETX_COOKIE")
headers = {"Cookie": cookie} if cookie else {}
if os.environ.get("ETX_ORIGIN"):
    headers["Origin"] = os.environ["ETX_ORIGIN"]
sio.connect(url, headers=headers, transports=["websocket"], wait_timeout=10)
emit_line("subscribed", sign_in())
pong = sio.call("ping", {}, timeout=10)
emit_line("ready", pong)

sys.stdin.read()
sio.disconnect()
