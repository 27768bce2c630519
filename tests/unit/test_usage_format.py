"""The usage report's and the statement's CSV helpers: exact money text and exact CSV."""

from __future__ import annotations

import orjson

from xrouter.v1 import router_pb2 as pb
from xrouter_gateway.csv_format import kopecks
from xrouter_gateway.usage_format import usage_csv, usage_json


def test_money_is_exact_to_at_least_the_kopeck() -> None:
    assert [kopecks(t) for t in ("", "0", "12", "0.5", "1234.56", "0.00012345", "7.10000001",
                                 "-0.3")] == [
        "0.00", "0.00", "12.00", "0.50", "1234.56", "0.00012345", "7.10000001", "-0.30"]


def test_the_csv_has_the_groups_asked_for_first_then_the_json_columns() -> None:
    reply = pb.UsageReport(rows=[
        pb.UsageRow(day="2026-12-07", model="a/b", key_id="key-1", requests=2, prompt_tokens=10,
                    completion_tokens=20, cached_tokens=1, cache_write_tokens=2,
                    reasoning_tokens=3, cost="1.22", cost_net="1", vat="0.22"),
        pb.UsageRow(day="2026-12-07", model="x,\"y\"", requests=1, cost="0.00012345",
                    cost_net="0.0001012", vat="0.00002225")])
    assert usage_csv(reply, ["model", "day"]) == (
        "day,model,requests,prompt_tokens,completion_tokens,cached_tokens,cache_write_tokens,"
        "reasoning_tokens,cost,cost_net,vat\r\n"
        "2026-12-07,a/b,2,10,20,1,2,3,1.22,1.00,0.22\r\n"
        '2026-12-07,"x,""y""",1,0,0,0,0,0,0.00012345,0.0001012,0.00002225\r\n')
    assert usage_csv(pb.UsageReport(), []) == (
        "requests,prompt_tokens,completion_tokens,cached_tokens,cache_write_tokens,"
        "reasoning_tokens,cost,cost_net,vat\r\n")

    assert orjson.loads(orjson.dumps(usage_json(reply, ["key"])))[0] == {
        "requests": 2, "prompt_tokens": 10, "completion_tokens": 20, "cached_tokens": 1,
        "cache_write_tokens": 2, "reasoning_tokens": 3, "cost": 1.22, "cost_net": 1,
        "vat": 0.22, "key": "key-1"}
