"""`xrouter keys|credits|usage|generations|statement|plans`: the management API over HTTP (the
gateway's /v1/keys, /v1/credits, /v1/usage, /v1/generations, /v1/statement and
/v1/accounts/{id}/plan), authenticated with the master key or a management key (a statement or
generations: any key, of its own). Lists print as tables for a person (cli_format.py); `--json`
prints the API's JSON for scripts."""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from xrouter_router import cli_format

Handler = Callable[[argparse.Namespace], int]
Render = Callable[[Mapping[str, Any]], str]


def _connection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("XROUTER_URL", "http://127.0.0.1:8000"),
                        help="the gateway's base URL (default: $XROUTER_URL or "
                             "http://127.0.0.1:8000)")
    parser.add_argument("--key", default=os.environ.get("XROUTER_MASTER_KEY", ""),
                        help="master or management key (default: $XROUTER_MASTER_KEY)")


def _json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print the API's JSON (for scripts) instead of a table")


def call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None,
         query: dict[str, str] | None = None, *, raw: bool = False,
         render: Render | None = None) -> int:
    """One API call; prints the JSON answer (indented; `raw`: the body as it came, e.g. CSV;
    `render`, unless --json was given: what it makes of the JSON, its numbers as Decimal);
    exit code 0 on 2xx, 1 otherwise."""
    url = args.url.rstrip("/") + path
    if query:
        url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v})
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={
        "Authorization": f"Bearer {args.key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            answer = resp.read()
            if raw:
                sys.stdout.write(answer.decode())
            elif render is not None and not getattr(args, "json", False):
                sys.stdout.write(render(json.loads(answer, parse_float=Decimal)))
            else:
                print(json.dumps(json.loads(answer), indent=2, ensure_ascii=False))
            return 0
    except urllib.error.HTTPError as exc:
        print(exc.read().decode(errors="replace"), file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"xrouter: cannot reach {args.url}: {exc.reason}", file=sys.stderr)
        return 1


_LIMIT_FIELDS = ("requests_per_minute", "requests_per_day", "tokens_per_minute", "concurrent")


def _key_body(args: argparse.Namespace) -> dict[str, Any]:
    """The fields of `keys create` and `keys update` that were given."""
    body: dict[str, Any] = {"name": args.name, "limit": args.limit, "expires_at": args.expires_at,
                            "allowed_models": args.model, "allowed_ips": args.allow_ip,
                            "residency": args.residency, "pii_guard": args.pii_guard,
                            "pii_scope": args.pii_scope,
                            **{f: getattr(args, f) for f in _LIMIT_FIELDS}}
    if args.any_ip:
        body["allowed_ips"] = []
    return {k: v for k, v in body.items() if v is not None}


def _residency(parser: argparse.ArgumentParser, text: str) -> None:
    parser.add_argument("--residency", default=None, metavar="POLICY", help=text)


def _pii(parser: argparse.ArgumentParser, whose: str) -> None:
    parser.add_argument("--pii-guard", default=None, metavar="POLICY",
                        help=f"{whose} personal-data guard: off, mask, block{_CLEAR[whose]}")
    parser.add_argument("--pii-scope", default=None, metavar="SCOPE",
                        help=f"before which providers {whose} guard acts: foreign (outside "
                             f"Russia) or always{_CLEAR[whose]}")


_CLEAR = {"the key's": ", or '' for its account's", "the account's": " (default none)"}


def keys_command(parser: argparse.ArgumentParser) -> Handler:
    """Create, list, update, disable, enable or delete API keys."""
    _connection(parser)
    parser.add_argument("action", choices=["create", "list", "update", "disable", "enable",
                                           "delete"])
    parser.add_argument("id", nargs="?", help="key id (update, disable, enable, delete)")
    parser.add_argument("--name", default=None)
    parser.add_argument("--tier", default="free")
    parser.add_argument("--account", default="")
    parser.add_argument("--limit", default=None, help="credit limit in RUB")
    parser.add_argument("--expires-at", default=None, help="ISO 8601 time")
    parser.add_argument("--model", action="append", default=None, help="allowed model (repeat)")
    parser.add_argument("--allow-ip", action="append", default=None, metavar="ADDRESS",
                        help="an IPv4/IPv6 address or CIDR network the key may be used from "
                             "(repeat; at most 100; none: any address)")
    parser.add_argument("--any-ip", action="store_true",
                        help="update: remove the key's IP allow-list (any address)")
    _residency(parser, "where the key's requests may be served: ru, any, or '' for its "
                       "account's policy")
    _pii(parser, "the key's")
    for flag in ("requests-per-minute", "requests-per-day", "tokens-per-minute", "concurrent"):
        parser.add_argument(f"--{flag}", type=int, default=None)
    _json_flag(parser)

    def run(args: argparse.Namespace) -> int:
        if args.action == "list":
            return call(args, "GET", "/v1/keys", query={"account_id": args.account},
                        render=cli_format.keys_table)
        if args.action == "create":
            body = {"tier": args.tier, "account_id": args.account, **_key_body(args)}
            return call(args, "POST", "/v1/keys", body)
        if not args.id:
            print(f"xrouter keys {args.action}: a key id is required", file=sys.stderr)
            return 2
        if args.action == "delete":
            return call(args, "DELETE", f"/v1/keys/{args.id}")
        if args.action == "update":
            return call(args, "PATCH", f"/v1/keys/{args.id}", _key_body(args))
        return call(args, "PATCH", f"/v1/keys/{args.id}", {"disabled": args.action == "disable"})
    return run


def credits_command(parser: argparse.ArgumentParser) -> Handler:
    """Top up an account (`add ACCOUNT AMOUNT`) or show its credits (`show [ACCOUNT]`)."""
    _connection(parser)
    parser.add_argument("action", choices=["add", "show"])
    parser.add_argument("account", nargs="?", default="")
    parser.add_argument("amount", nargs="?", default="", help="RUB, an exact decimal")
    parser.add_argument("--reference", default="")
    _json_flag(parser)

    def run(args: argparse.Namespace) -> int:
        if args.action == "show":
            return call(args, "GET", "/v1/credits", query={"account_id": args.account},
                        render=cli_format.credits_pairs)
        if not args.account or not args.amount:
            print("xrouter credits add: ACCOUNT and AMOUNT are required", file=sys.stderr)
            return 2
        return call(args, "POST", "/v1/credits", {"account_id": args.account,
                                                  "amount": args.amount,
                                                  "reference": args.reference})
    return run


def usage_command(parser: argparse.ArgumentParser) -> Handler:
    """Usage report grouped by day, key, model and/or provider."""
    _connection(parser)
    parser.add_argument("--group-by", default="model", help="comma list of day,key,model,provider")
    parser.add_argument("--account", default="")
    parser.add_argument("--since", default="", help="ISO 8601 time")
    parser.add_argument("--until", default="", help="ISO 8601 time")
    _json_flag(parser)

    def run(args: argparse.Namespace) -> int:
        return call(args, "GET", "/v1/usage", query={"group_by": args.group_by,
                                                      "account_id": args.account,
                                                      "since": args.since, "until": args.until},
                    render=cli_format.usage_table)
    return run


def generations_command(parser: argparse.ArgumentParser) -> Handler:
    """The latest generations, newest first (a key's own; a management key's account's; any
    account's with the master key): time, model, provider, key, tokens, cost, latency."""
    _connection(parser)
    parser.add_argument("--limit", default="", help="how many (1 to 200; default 50)")
    parser.add_argument("--before", default="", help="the cursor printed under the last page")
    parser.add_argument("--account", default="", help="the master key: this account's")
    parser.add_argument("--key-id", default="", help="this key's (management)")
    parser.add_argument("--model", default="")
    parser.add_argument("--provider", default="")
    parser.add_argument("--since", default="", help="unix seconds or ISO 8601")
    parser.add_argument("--until", default="", help="unix seconds or ISO 8601")
    _json_flag(parser)

    def run(args: argparse.Namespace) -> int:
        return call(args, "GET", "/v1/generations", query={
            "limit": args.limit, "before": args.before, "account_id": args.account,
            "key_id": args.key_id, "model": args.model, "provider": args.provider,
            "since": args.since, "until": args.until}, render=cli_format.generations_table)
    return run


def statement_command(parser: argparse.ArgumentParser) -> Handler:
    """An account's monthly statement (net, VAT, gross per generation and totals) as CSV or
    JSON: `--month 2026-01 [--account ACCOUNT] [--format csv]`."""
    _connection(parser)
    parser.add_argument("--month", required=True, help="YYYY-MM (Moscow months by default)")
    parser.add_argument("--account", default="", help="the account (required with the master "
                                                      "key; default: the key's own)")
    parser.add_argument("--format", default="json", choices=["json", "csv"])

    def run(args: argparse.Namespace) -> int:
        return call(args, "GET", "/v1/statement", query={
            "month": args.month, "account_id": args.account, "format": args.format},
            raw=args.format == "csv")
    return run


def plans_command(parser: argparse.ArgumentParser) -> Handler:
    """Show an account's plan (`show ACCOUNT`) or set it with the master key (`set ACCOUNT
    --tier T [--requests-per-minute N ...]`): the highest tier and limits its keys may have."""
    _connection(parser)
    parser.add_argument("action", choices=["show", "set"])
    parser.add_argument("account")
    parser.add_argument("--tier", default=None, help="free, pro or max (set)")
    for flag in ("requests-per-minute", "requests-per-day", "tokens-per-minute", "concurrent"):
        parser.add_argument(f"--{flag}", type=int, default=None,
                            help="ceiling for the account's keys (default: the tier's)")
    _residency(parser, "set: the account's residency policy (ru, any; default none)")
    _pii(parser, "the account's")
    parser.add_argument("--outage-allowance", default=None, metavar="RUB",
                        help="set: RUB each router replica may admit for the account's paid "
                             "requests while Redis cannot check credits (default: the "
                             "router's XROUTER_CREDITS_OUTAGE_ALLOWANCE)")

    def run(args: argparse.Namespace) -> int:
        path = f"/v1/accounts/{urllib.parse.quote(args.account, safe='')}/plan"
        if args.action == "show":
            return call(args, "GET", path)
        if not args.tier:
            print("xrouter plans set: --tier is required", file=sys.stderr)
            return 2
        body = {"tier": args.tier, **{f: getattr(args, f) for f in (
            "requests_per_minute", "requests_per_day", "tokens_per_minute", "concurrent",
            "residency", "pii_guard", "pii_scope", "outage_allowance")
            if getattr(args, f) is not None}}
        return call(args, "PUT", path, body)
    return run
