"""Every metric an alert rule or a dashboard panel names must exist.

    python metric_names.py RULES.yaml DASHBOARD.json

The metrics Sluice exports are read from the code (control_plane/metrics.py,
execution_plane/metrics.py, recovery/metrics.py, console/metrics.py): each Counter, Gauge
and Histogram declared there, with the sample names prometheus_client gives it (_total,
_bucket, ...).
Metrics from elsewhere are listed below with where they come from. A name in a PromQL
expression that is neither is a finding, so a renamed metric breaks CI, not an alert.
Standard library only (tests/e2e/test_deploy_metric_names.py uses it against a running
platform's /metrics, where the project's virtualenv has no YAML parser).
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
METRICS_MODULES = ("control_plane/metrics.py", "execution_plane/metrics.py",
                   "recovery/metrics.py", "console/metrics.py")
SUFFIXES = {"Counter": ("_total", "_created"), "Gauge": ("",),
            "Histogram": ("_bucket", "_sum", "_count", "_created"),
            "Summary": ("_sum", "_count", "_created")}
# Not Sluice's, and why they may be named.
EXTERNAL = {
    "up": "Prometheus, per scrape target",
    "rabbitmq_detailed_queue_messages_ready":
        "RabbitMQ's rabbitmq_prometheus plugin, /metrics/detailed?family=queue_coarse_metrics",
    "rabbitmq_detailed_queue_messages_unacked": "the same family",
}
# PromQL words that are not metric names.
PROMQL_WORDS = {
    "sum", "min", "max", "avg", "count", "stddev", "stdvar", "topk", "bottomk", "quantile",
    "count_values", "group", "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "bool", "offset", "rate", "irate", "increase", "delta", "idelta",
    "deriv", "histogram_quantile", "absent", "absent_over_time", "time", "vector", "scalar",
    "clamp_min", "clamp_max", "abs", "ceil", "floor", "round", "label_replace", "label_join",
    "sort", "sort_desc", "timestamp", "changes", "resets", "max_over_time", "min_over_time",
    "avg_over_time", "sum_over_time", "count_over_time", "last_over_time", "predict_linear",
    "inf", "nan",
}


def exported_names() -> dict[str, str]:
    """Sample name -> the module that declares it."""
    names = {}
    for module in METRICS_MODULES:
        tree = ast.parse((ROOT / module).read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in SUFFIXES and node.args
                    and isinstance(node.args[0], ast.Constant)):
                family = str(node.args[0].value)
                if node.func.id == "Counter":
                    family = family.removesuffix("_total")
                for suffix in SUFFIXES[node.func.id]:
                    names[family + suffix] = module
    return names


def metric_names(expr: str) -> set[str]:
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, regexes)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    expr = re.sub(r"\$\w+", "", expr)  # Grafana variables
    words = re.findall(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", expr)
    return {w for w in words if w.lower() not in PROMQL_WORDS}


def rule_exprs(path: Path) -> list[tuple[str, str]]:
    """(rule name, expr) of a Prometheus rules file: the `expr:` keys, inline or as a
    folded/literal block, read line by line (the file's own layout, checked by yamllint
    and promtool); fails if a rule has no expr so read."""
    lines = path.read_text().splitlines()
    found, name = [], None
    rules = 0
    for index, line in enumerate(lines):
        rule = re.match(r"\s*- (alert|record): *(\S+)", line)
        if rule:
            name, rules = rule.group(2), rules + 1
        key = re.match(r"(\s*)(?:- )?expr: *(.*)$", line)
        if not key:
            continue
        indent, value = len(key.group(1)), key.group(2).strip()
        if value in (">", ">-", "|", "|-"):
            block = []
            for following in lines[index + 1:]:
                if following.strip() and len(following) - len(following.lstrip()) <= indent:
                    break
                block.append(following.strip())
            value = " ".join(block)
        elif value[:1] in "'\"" and value[-1:] == value[:1]:
            value = value[1:-1]
        found.append((name or "?", value))
    if len(found) != rules:
        raise SystemExit(f"{path}: {rules} rules but {len(found)} expr keys read")
    return found


def dashboard_exprs(path: Path) -> list[tuple[str, str]]:
    found = []

    def walk(panels: list[dict]) -> None:
        for panel in panels:
            for target in panel.get("targets", []):
                found.append((panel.get("title", "?"), target["expr"]))
            walk(panel.get("panels", []))

    walk(json.loads(path.read_text())["panels"])
    return found


def main() -> int:
    exported = exported_names()
    findings, checked = [], 0
    for path in map(Path, sys.argv[1:]):
        exprs = rule_exprs(path) if path.suffix in (".yaml", ".yml") else dashboard_exprs(path)
        for where, expr in exprs:
            for name in sorted(metric_names(expr)):
                checked += 1
                if name not in exported and name not in EXTERNAL:
                    findings.append(f"{path.name}: {where}: no metric {name!r} in "
                                    f"{', '.join(METRICS_MODULES)}")
    print(f"  {checked} metric references, {len(exported)} exported sample names")
    for finding in findings:
        print(f"  FINDING {finding}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
