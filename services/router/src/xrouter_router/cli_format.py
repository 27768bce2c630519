"""How the CLI shows the API's answers to a person: aligned tables, money exact to the kopeck
(`1 234.50 RUB`: thousands grouped by spaces, at least two decimals, every decimal the ledger
keeps), times in the local time zone. Pure: JSON in (numbers as Decimal), text out."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

_KOPECK = Decimal("0.01")
NONE = "-"


def money(value: Any) -> str:
    """RUB exact to the kopeck at least: 1234.5 -> "1 234.50 RUB", 0.00012345 stays whole;
    None -> "-"."""
    if value is None:
        return NONE
    amount = Decimal(str(value))
    exponent = amount.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        amount = amount.quantize(_KOPECK)
    whole, _, fraction = format(abs(amount), "f").partition(".")
    groups = [whole[max(0, end - 3):end] for end in range(len(whole), 0, -3)][::-1]
    sign = "-" if amount < 0 else ""
    return f"{sign}{' '.join(groups)}.{fraction} RUB"


def local_time(text: str | None) -> str:
    """An ISO 8601 time from the API as local wall-clock time, to the second; None -> "-"."""
    if not text:
        return NONE
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def count(value: Any) -> str:
    return NONE if value is None else str(value)


@dataclass(frozen=True, slots=True)
class Column:
    title: str
    right: bool = False  # numbers and money align right


def table(columns: Sequence[Column], rows: Sequence[Sequence[str]]) -> str:
    """The rows under their column titles, each column as wide as its widest cell, two spaces
    apart; no trailing spaces. No rows: the titles and "(none)"."""
    widths = [max([len(c.title), *(len(row[i]) for row in rows)])
              for i, c in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.rjust(w) if c.right else cell.ljust(w)
                         for cell, c, w in zip(cells, columns, widths, strict=True)).rstrip()
    return "\n".join([line([c.title for c in columns]), *(line(row) for row in rows),
                      *(["(none)"] if not rows else [])]) + "\n"


def pairs(items: Sequence[tuple[str, str]]) -> str:
    """Name and value lines, the values aligned right (their decimal points line up)."""
    return table([Column(""), Column("", True)], [list(item) for item in items]).partition(
        "\n")[2]


def _status(key: Mapping[str, Any]) -> str:
    return "disabled" if key.get("disabled") else "active"


def keys_table(answer: Mapping[str, Any]) -> str:
    columns = [Column("ID"), Column("LABEL"), Column("TIER"), Column("STATUS"),
               Column("USAGE", True), Column("THIS MONTH", True), Column("LIMIT", True),
               Column("CREATED"), Column("EXPIRES")]
    return table(columns, [[k["id"], k.get("label") or NONE, k["tier"], _status(k),
                            money(k["usage"]), money(k["usage_monthly"]), money(k["limit"]),
                            local_time(k["created_at"]), local_time(k["expires_at"])]
                           for k in answer["data"]])


def credits_pairs(answer: Mapping[str, Any]) -> str:
    c = answer["data"]
    return pairs([("account", c["account_id"]), ("balance", money(c["balance"])),
                  ("credits", money(c["total_credits"])),
                  ("usage", money(c["total_usage"])),
                  ("  of which VAT", money(c["total_usage_vat"]))])


_GROUPS = (("day", "DAY"), ("key", "KEY"), ("model", "MODEL"), ("provider", "PROVIDER"))
_SUMS = (("requests", "REQUESTS"), ("prompt_tokens", "PROMPT TOKENS"),
         ("completion_tokens", "COMPLETION TOKENS"))


def usage_table(answer: Mapping[str, Any]) -> str:
    """One line per group, then their total (exact sums)."""
    rows: list[Mapping[str, Any]] = answer["data"]
    groups = [(name, title) for name, title in _GROUPS if any(name in r for r in rows)]
    columns = [*(Column(title) for _, title in groups),
               *(Column(title, True) for _, title in _SUMS), Column("COST", True)]
    lines = [[*(str(r.get(name, "")) for name, _ in groups),
              *(count(r[name]) for name, _ in _SUMS), money(r["cost"])] for r in rows]
    if len(rows) > 1:
        label = ["total", *([""] * (len(groups) - 1))] if groups else []
        lines.append([*label, *(str(sum(r[name] for r in rows)) for name, _ in _SUMS),
                      money(sum((Decimal(str(r["cost"])) for r in rows), Decimal(0)))])
    return table(columns, lines)


def generations_table(answer: Mapping[str, Any]) -> str:
    """The page, newest first; a last line names the next page's --before when there is one."""
    columns = [Column("TIME"), Column("ID"), Column("MODEL"), Column("PROVIDER"), Column("KEY"),
               Column("IN", True), Column("OUT", True), Column("COST", True),
               Column("LATENCY", True), Column("STREAMED"), Column("FINISH")]
    text = table(columns, [
        [local_time(g["created_at"]), g["id"], g["model"], g["provider"] or NONE,
         g.get("key_label") or g["key_id"], count(g["prompt_tokens"]),
         count(g["completion_tokens"]), money(g["cost"]), f"{g['latency_ms']} ms",
         "yes" if g["streamed"] else "no", g.get("finish_reason") or NONE]
        for g in answer["data"]])
    if answer.get("next_before"):
        text += f"older: --before {answer['next_before']}\n"
    return text
