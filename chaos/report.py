"""The run's report: a JSON file in the run folder and a short table on stdout (faults by
kind, requests, charges, anomalies by kind with their ids)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from chaos.checks import Anomaly
from chaos.facts import Facts
from chaos.nemesis import Struck

_IDS_SHOWN = 5


def summarize(
    *,
    header: dict[str, Any],
    struck: list[Struck],
    facts: Facts,
    anomalies: list[Anomaly],
    extra: dict[str, Any],
) -> dict[str, Any]:
    faults = Counter(s.fault.kind.value for s in struck if s.error is None)
    failed = Counter(s.fault.kind.value for s in struck if s.error is not None)
    requests = Counter(r["kind"] for r in facts.requests)
    retries: Counter[str] = Counter()
    for request in facts.requests:
        retries.update(request.get("retried_on", {}))
    finals = Counter(f"{r['kind']} {r['status']}" for r in facts.requests)
    kinds: dict[str, list[list[str]]] = {}
    for anomaly in anomalies:
        kinds.setdefault(anomaly.kind, []).append([*anomaly.ids, anomaly.detail])
    return {
        **header,
        "faults_total": sum(faults.values()),
        "faults_by_kind": dict(sorted(faults.items())),
        "faults_failed_by_kind": dict(sorted(failed.items())),
        "proxy_faults_by_link": dict(
            sorted(
                Counter(s.fault.target for s in struck if s.fault.kind.startswith("proxy_")).items()
            )
        ),
        "requests_by_kind": dict(sorted(requests.items())),
        "final_answers": dict(sorted(finals.items())),
        "attempts_total": sum(r["attempts"] for r in facts.requests),
        "retries_by_reason": dict(sorted(retries.items())),
        "our_charges_by_status": dict(
            sorted(Counter(c["status"] for c in facts.our_charges).items())
        ),
        "processor_charges_by_status": dict(
            sorted(Counter(c["status"] for c in facts.processor_charges).items())
        ),
        "processor_refunds": len(facts.processor_refunds),
        "processor_disputes_by_status": dict(
            sorted(Counter(d["status"] for d in facts.processor_disputes).items())
        ),
        "ledger_balanced": facts.ledger_balanced,
        **extra,
        "anomalies_total": len(anomalies),
        "anomalies_by_kind": kinds,
    }


def write(summary: dict[str, Any], run_dir: Path) -> Path:
    path = run_dir / "report.json"
    path.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
    return path


def table(summary: dict[str, Any]) -> str:
    lines = [
        f"chaos {summary['profile']} seed={summary['seed']} "
        f"{summary['duration_seconds']:.0f}s: {summary['faults_total']} faults, "
        f"{sum(summary['requests_by_kind'].values())} requests "
        f"({summary['attempts_total']} attempts), "
        f"{sum(summary['our_charges_by_status'].values())} charges",
        "",
        f"{'fault':<20}{'struck':>8}{'failed':>8}",
    ]
    failed = summary["faults_failed_by_kind"]
    for kind, count in summary["faults_by_kind"].items():
        lines.append(f"{kind:<20}{count:>8}{failed.get(kind, 0):>8}")
    lines += ["", f"{'requests':<20}{'count':>8}"]
    lines += [f"{kind:<20}{n:>8}" for kind, n in summary["requests_by_kind"].items()]
    lines += ["", f"our charges        {summary['our_charges_by_status']}"]
    lines += [f"processor charges  {summary['processor_charges_by_status']}"]
    lines += [f"note: {note}" for note in summary.get("notes", [])]
    lines += ["", f"{'anomaly':<26}{'count':>6}  ids"]
    for kind, items in summary["anomalies_by_kind"].items():
        shown = "; ".join(",".join(i for i in item[:-1]) for item in items[:_IDS_SHOWN])
        lines.append(f"{kind:<26}{len(items):>6}  {shown}")
    if not summary["anomalies_by_kind"]:
        lines.append("none")
    return "\n".join(lines)
