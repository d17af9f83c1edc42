#!/usr/bin/env python3
"""Drives a running dev-mode server through a Python client generated from its own OpenAPI
document (openapi-python-client): register two users, verify the recipient's address, log in,
fund the sender with a simulated deposit, send a P2P transfer, then read it back from the
transfer history, the transaction list and both export formats.

Every request goes through the generated package's modules; the only other input is the
verification mail, read from the server's data directory (dev mode keeps mail as .eml files).

    openapi_client_test.py --base-url http://127.0.0.1:18080 --data-dir DIR \
        --client-dir GENERATED_PROJECT_DIR [--package etx_processor_api_client]

Answers whose operation documents a schema arrive as generated model objects and are read
through their attributes; answers still documented without one come back as `parsed = None`
and are read from the JSON body instead. `field()` reads either, so the script keeps working
once those operations document their schemas. The run ends with the list of calls that were
untyped and a `N passed, N failed` line.
"""

from __future__ import annotations

import argparse
import csv
import email
import email.policy
import importlib
import io
import json
import re
import sys
import time
import uuid
from decimal import Decimal
from http import HTTPStatus
from pathlib import Path
from typing import Any

PASSWORD = "Str0ng-Passphrase-9"
DEPOSIT_USD = "100"
PAY_CURRENCY = "USDT"
TRANSFER = Decimal("25")

untyped_calls: list[str] = []
passed = 0
failed = 0


def check(ok: bool, what: str) -> None:
    global passed, failed
    if ok:
        passed += 1
        print(f"ok   {what}")
    else:
        failed += 1
        print(f"FAIL {what}")


def field(obj: Any, name: str) -> Any:
    """`name` of a generated model (attribute, `type` → `type_`, or additional property) or of
    a plain JSON object."""
    if isinstance(obj, dict):
        return obj[name]
    for attr in (name, name + "_"):
        if hasattr(obj, attr):
            value = getattr(obj, attr)
            return None if type(value).__name__ == "Unset" else value
    return obj[name]  # additional properties of a model, e.g. a balances map


def answer(op_name: str, resp: Any, expected: HTTPStatus, decode: bool = True) -> Any:
    """The body of a generated client's `Response`: the parsed model where the operation has a
    schema, else the decoded JSON (`decode=False`: the raw bytes, for attachments). Fails the
    run on any other status."""
    if resp.status_code != expected:
        raise SystemExit(
            f"{op_name}: expected {expected.value}, got {resp.status_code.value}: "
            f"{resp.content.decode(errors='replace')[:500]}"
        )
    if resp.parsed is not None:
        return resp.parsed
    untyped_calls.append(op_name)
    if not decode:
        return resp.content
    return json.loads(resp.content) if resp.content else None


def balance_of(pkg: Any, client: Any, currency: str) -> Decimal:
    resp = pkg.api.wallet.balance.sync_detailed(client=client)
    body = answer("balance", resp, HTTPStatus.OK)
    balances = field(field(body, "wallet"), "balances")
    try:
        value = field(balances, currency)
    except KeyError:
        return Decimal("0")
    return Decimal(value)


def verification_token(data_dir: Path, address: str, timeout: float = 15.0) -> str:
    """The token from the newest verification mail to `address` in the data dir's mail folder."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for path in sorted((data_dir / "mail").glob("*.eml"), reverse=True):
            msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            if address not in str(msg["To"]):
                continue
            part = msg.get_body(preferencelist=("plain",))
            text = part.get_content() if part is not None else ""
            m = re.search(r"verify-email\?token=([A-Za-z0-9_\-.~%]+)", text)
            if m:
                return m.group(1)
        time.sleep(0.2)
    raise SystemExit(f"no verification mail to {address} in {data_dir / 'mail'}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--data-dir", required=True, type=Path)
    ap.add_argument("--package", help="the generated package's name (default: the one found in --client-dir)")
    ap.add_argument("--client-dir", type=Path, help="directory holding the generated package (put on sys.path)")
    args = ap.parse_args()
    if args.client_dir:
        sys.path.insert(0, str(args.client_dir.resolve()))
    if not args.package:
        found = sorted(p.parent.name for p in (args.client_dir or Path(".")).glob("*/client.py"))
        if len(found) != 1:
            raise SystemExit(f"cannot tell the generated package in {args.client_dir}: {found}; pass --package")
        args.package = found[0]

    pkg = importlib.import_module(args.package)
    for mod in (
        "api.auth.register", "api.auth.login", "api.auth.verify_email", "api.auth.me",
        "api.wallet.balance", "api.wallet.create_deposit", "api.wallet.simulate_deposit",
        "api.wallet.get_deposit", "api.wallet.p2p", "api.wallet.p2p_history",
        "api.transactions.list_", "api.transactions.export_get", "api.transactions.export_post",
    ):
        importlib.import_module(f"{args.package}.{mod}")
    models = importlib.import_module(f"{args.package}.models")
    api = pkg.api
    base = args.base_url
    run = uuid.uuid4().hex[:8]
    alice, bob = f"alice{run}", f"bob{run}"

    # Register both; the response carries tokens and the user.
    ids = {}
    for name in (alice, bob):
        with pkg.Client(base_url=base) as anon:
            resp = api.auth.register.sync_detailed(
                client=anon,
                body=models.RegisterRequest(username=name, email=f"{name}@example.com", password=PASSWORD),
            )
            body = answer("register", resp, HTTPStatus.CREATED)
        user = field(body, "user")
        ids[name] = field(user, "id")
        check(field(user, "username") == name and bool(field(body, "access_token")), f"register {name}")

    # Only verified users receive transfers: bob confirms his address with the mailed link's token.
    token = verification_token(args.data_dir, f"{bob}@example.com")
    with pkg.Client(base_url=base) as anon:
        resp = api.auth.verify_email.sync_detailed(client=anon, body=models.TokenRequest(token=token))
        answer("verify_email", resp, HTTPStatus.OK)

    # Log in (JSON body); the bearer token authenticates everything after, so no CSRF is needed.
    def login(name: str) -> Any:
        with pkg.Client(base_url=base) as anon:
            resp = api.auth.login.sync_detailed(
                client=anon, body=models.LoginRequest(login=name, password=PASSWORD)
            )
            body = answer("login", resp, HTTPStatus.OK)
        check(
            isinstance(body, models.AuthResponse) and field(body, "token_type") == "bearer",
            f"login {name} answers AuthResponse with a bearer token",
        )
        return pkg.AuthenticatedClient(base_url=base, token=field(body, "access_token"))

    a, b = login(alice), login(bob)
    with a, b:
        me = answer("me", api.auth.me.sync_detailed(client=b), HTTPStatus.OK)
        check(field(me, "is_verified") is True, "bob is verified")

        # Fund alice: a deposit order, paid in dev mode through the signed sandbox webhook.
        before = balance_of(pkg, a, PAY_CURRENCY)
        resp = api.wallet.create_deposit.sync_detailed(
            client=a, body=models.DepositBody(amount=DEPOSIT_USD, pay_currency=PAY_CURRENCY)
        )
        order = field(answer("create_deposit", resp, HTTPStatus.CREATED), "deposit")
        order_id = field(order, "order_id")
        pay_amount = Decimal(field(order, "pay_amount"))
        check(order_id.startswith("DEP-") and pay_amount > 0, f"deposit order {order_id} for {pay_amount} {PAY_CURRENCY}")
        resp = api.wallet.simulate_deposit.sync_detailed(
            order_id, client=a, body=models.SimulateBody(status="finished")
        )
        sim = answer("simulate_deposit", resp, HTTPStatus.OK)
        check(field(field(sim, "deposit"), "status") == "finished", f"simulated payment: {field(sim, 'result')}")
        resp = api.wallet.get_deposit.sync_detailed(order_id, client=a)
        dep = field(answer("get_deposit", resp, HTTPStatus.OK), "deposit")
        credited = Decimal(field(dep, "credited"))
        funded = balance_of(pkg, a, PAY_CURRENCY)
        check(credited > 0 and funded == before + credited, f"alice's {PAY_CURRENCY} went {before} → {funded} (credited {credited})")

        # The transfer.
        bob_before = balance_of(pkg, b, PAY_CURRENCY)
        key = str(uuid.uuid4())
        transfer_body = models.P2PBody(
            recipient=bob, amount=str(TRANSFER), currency=PAY_CURRENCY, note=f"lunch {run}"
        )
        resp = api.wallet.p2p.sync_detailed(client=a, body=transfer_body, idempotency_key=key)
        sent = answer("p2p", resp, HTTPStatus.CREATED)
        transfer = field(sent, "transfer")
        transfer_id = field(transfer, "id")
        check(
            field(transfer, "status") == "completed" and Decimal(field(transfer, "amount")) == TRANSFER,
            f"p2p transfer {transfer_id} completed",
        )
        # Same key, same body: the first answer again, nothing moves twice.
        resp = api.wallet.p2p.sync_detailed(client=a, body=transfer_body, idempotency_key=key)
        again = answer("p2p", resp, HTTPStatus.CREATED)
        check(field(field(again, "transfer"), "id") == transfer_id, "repeating the Idempotency-Key replays the transfer")

        alice_after = balance_of(pkg, a, PAY_CURRENCY)
        bob_after = balance_of(pkg, b, PAY_CURRENCY)
        check(alice_after == funded - TRANSFER, f"alice {funded} → {alice_after}")
        check(bob_after == bob_before + TRANSFER, f"bob {bob_before} → {bob_after}")

        # History, both sides.
        hist = answer("p2p_history", api.wallet.p2p_history.sync_detailed(client=a), HTTPStatus.OK)
        mine = [t for t in field(hist, "transfers") if field(t, "id") == transfer_id]
        check(
            len(mine) == 1 and field(mine[0], "direction") == "out"
            and Decimal(field(mine[0], "amount")) == TRANSFER and field(mine[0], "note") == f"lunch {run}",
            "alice's transfer history has the transfer, outgoing",
        )
        hist_b = answer("p2p_history", api.wallet.p2p_history.sync_detailed(client=b), HTTPStatus.OK)
        theirs = [t for t in field(hist_b, "transfers") if field(t, "direction") == "in"]
        check(
            len(theirs) == 1 and Decimal(field(theirs[0], "amount")) == TRANSFER
            and field(field(theirs[0], "counterparty"), "username") == alice,
            "bob's transfer history has it, incoming from alice",
        )
        txs = answer(
            "transactions.list",
            api.transactions.list_.sync_detailed(client=a, filter_=models.ListFilter(type_="p2p")),
            HTTPStatus.OK,
        )
        check(
            any(field(t, "id") == transfer_id for t in field(txs, "transactions")),
            "transaction list filtered by type=p2p has it",
        )

        # Export: CSV by GET, JSON by POST.
        resp = api.transactions.export_get.sync_detailed(
            client=a, format_="csv", filter_=models.ExportGetFilter(type_="p2p")
        )
        content = answer("export_get", resp, HTTPStatus.OK, decode=False)
        rows = list(csv.DictReader(io.StringIO(content.decode())))
        hit = [r for r in rows if transfer_id in r.values()]
        check(
            len(hit) == 1 and Decimal(next(v for k, v in hit[0].items() if k and k.lower() == "amount")) == TRANSFER,
            f"CSV export has the transfer ({len(rows)} rows)",
        )
        resp = api.transactions.export_post.sync_detailed(
            client=a, body=models.ExportRequest(format_="json", type_="p2p")
        )
        exported = json.loads(answer("export_post", resp, HTTPStatus.OK, decode=False))
        items = exported if isinstance(exported, list) else next(v for v in exported.values() if isinstance(v, list))
        check(any(i.get("id") == transfer_id for i in items), f"JSON export has the transfer ({len(items)} items)")

    seen = sorted(set(untyped_calls))
    print(f"untyped answers (parsed = None, read as JSON): {', '.join(seen) if seen else 'none'}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
