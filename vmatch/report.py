"""Report stage, the last of decode -> sample -> embed -> bank -> search -> align -> verify -> report:
the records a run ends with rendered for people and programs.

- a :class:`~vmatch.types.MatchReport` as the table ``vmatch match`` prints, or as its JSON line
  (the contract: :meth:`MatchReport.to_dict`, one object per query);
- a bank's summary (the ``info()`` dict of a bank or a sharded bank) as text or indented JSON;
- a :class:`~vmatch.types.ReferenceInfo` as the tab-separated line of ``vmatch list`` or JSON.

Functions return text (lines or one string) and print nothing: the caller says where it goes.
Pure formatting, no heavy import: the command line imports it at start-up.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vmatch.types import MatchReport, ReferenceInfo


def format_time(t: float) -> str:
    """Seconds as ``M:SS.s`` (``75.25`` -> ``1:15.2``)."""
    m, s = divmod(t, 60.0)
    return f"{int(m)}:{s:04.1f}"


def report_json(report: MatchReport) -> str:
    """One report as its JSON line (no newline)."""
    return json.dumps(report.to_dict())


def report_table(report: MatchReport) -> list[str]:
    """One report as a table: a head line (the error, ``no match`` or the count of matches with the
    threshold), then a row per segment, the reference and its score on its first one."""
    if report.error is not None:
        return [f"{report.query}: ERROR {report.error}"]
    head = f"{report.query} ({report.duration:.1f} s): "
    if not report.matches:
        return [head + f"no match (threshold {report.threshold:.3f})"]
    lines = [
        head + f"{len(report.matches)} match(es) (threshold {report.threshold:.3f})",
        f"  {'reference':<32} {'score':>7}  {'query':>17}  {'reference':>17}  {'seg.score':>9}",
    ]
    for m in report.matches:
        for i, s in enumerate(m.segments):
            name = m.reference if i == 0 else ""
            score = f"{m.score:7.3f}" if i == 0 else " " * 7
            lines.append(
                f"  {name:<32} {score}  {format_time(s.query_start):>7} - {format_time(s.query_end):<7}"
                f"  {format_time(s.reference_start):>7} - {format_time(s.reference_end):<7}  {s.score:9.3f}"
            )
    return lines


def info_json(info: dict[str, Any]) -> str:
    """A bank's summary as indented JSON, keys sorted."""
    return json.dumps(info, indent=2, sort_keys=True)


def info_lines(info: dict[str, Any]) -> list[str]:
    """A bank's summary as aligned ``name: value`` lines; a sharded bank's ends with a line a shard."""
    sharded = bool(info.get("sharded"))
    lines = [
        f"bank:        {info['path']}" + (f" ({info['shards']} shards)" if sharded else ""),
        f"model:       {info['model_id']}",
        f"references:  {info['references']}",
        f"frames:      {info['frames']}",
        f"video:       {info['seconds']:.1f} s",
    ]
    if sharded:
        lines.append(f"on disk:     {info['bytes_on_disk'] / 1e6:.2f} MB")
        lines += [f"  {sh['path']}: {sh['references']} references, {sh['frames']} frames, index {sh['index']}"
                  for sh in info["shard_list"]]
    else:
        lines += [
            f"index:       {info['index_type']} (generation {info['generation']})",
            f"on disk:     {info['bytes_on_disk'] / 1e6:.2f} MB",
            f"created:     {info['created_at']}",
        ]
    return lines


def reference_json(ref: ReferenceInfo) -> str:
    """One reference as a JSON line (no newline)."""
    return json.dumps(ref.to_dict())


def reference_line(ref: ReferenceInfo) -> str:
    """One reference as ``vmatch list`` prints it: id, duration, frames, when added, SHA-256 prefix."""
    return f"{ref.reference}\t{ref.duration:.1f} s\t{ref.n_frames} frames\t{ref.added_at}\t{ref.sha256[:16]}"
