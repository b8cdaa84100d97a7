"""``ccnet deploy``'s report: ``report.json`` (everything) and ``report.md`` (the tables a person
reads: files, steps, parity, latency, notes)."""
from __future__ import annotations

import os
from typing import List, Optional

from ccnet.files import atomic_write, write_json

from .machine import library_versions, machine_info


def _num(x, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.2f}" if signed else f"{x:.2f}"


def _parity_lines(parity: Optional[dict]) -> List[str]:
    if not parity:
        return ["No parity check (see the notes)."]
    if parity.get("kind") == "agreement":
        lines = [f"Agreement with PyTorch FP32 on {parity['num_images']} unlabelled image(s), "
                 "percent:", "",
                 "| model | backend | pixel agreement | mIoU vs PyTorch labels |",
                 "|---|---|---:|---:|"]
        lines += [f"| {b['precision']} | {b['name']} | {_num(b['pixel_agreement'])} | "
                  f"{_num(b['miou_vs_pytorch'])} |" for b in parity["backends"]]
        return lines
    lines = [f"mIoU on {parity['num_images']} labelled image(s) ({parity['dataset']} layout), "
             "percent; Δ against PyTorch FP32:", "",
             "| backend | precision | mIoU | ΔmIoU | pixel agreement | model |",
             "|---|---|---:|---:|---:|---|"]
    lines += [f"| {b['name']} | {b['precision']} | {_num(b['miou'])} | "
              f"{_num(b['delta_miou'], True)} | {_num(b['pixel_agreement'])} | "
              f"{os.path.basename(b['model'])} |" for b in parity["backends"]]
    return lines


def format_markdown(report: dict) -> str:
    """The human-readable report."""
    lines = [f"# Deployment report: {report['model']}", "",
             f"Checkpoint `{report['checkpoint']}`; precisions {', '.join(report['precisions'])}.",
             "", "## Files", "", "| file | size (MB) | sha256 |", "|---|---:|---|"]
    lines += [f"| {f['file']} | {f['bytes'] / 1e6:.1f} | `{f['sha256'][:16]}` |"
              for f in report["files"]]
    lines += ["", "## Steps", "", "| step | status | seconds |", "|---|---|---:|"]
    lines += [f"| {s['name']} | {'up to date (skipped)' if s['skipped'] else 'ran'} | "
              f"{s['seconds']:.1f} |" for s in report["steps"]]
    lines += ["", "## Parity", ""] + _parity_lines(report["parity"])
    if report["latency"]:
        machine = report["machine"]
        lines += ["", "## Latency", "",
                  f"Mean per image incl. pre/post-processing, this machine "
                  f"({machine['arch']}, {machine['cpu_count']} CPUs):", "",
                  "| model | backend | ms / image |", "|---|---|---:|"]
        lines += [f"| {r['model']} | {r.get('backend', '-')} | "
                  f"{r['ms_per_image'] if 'ms_per_image' in r else r['error']} |"
                  for r in report["latency"]]
    if report["notes"]:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in report["notes"]]
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items() if v)
    lines += ["", f"Versions: {versions}.", ""]
    return "\n".join(lines)


def write_reports(out_dir: str, report: dict) -> None:
    """``report.json`` and ``report.md`` in ``out_dir`` (``report`` gains ``machine`` and
    ``versions``)."""
    report["machine"] = machine_info()
    report["versions"] = library_versions()
    write_json(os.path.join(out_dir, "report.json"), report)
    atomic_write(os.path.join(out_dir, "report.md"), format_markdown(report).encode("utf-8"))
