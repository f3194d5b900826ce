"""A `SessionDiagnosis` as Markdown: what `playground diagnose` prints and `-o report.md` writes."""

from __future__ import annotations

from playground.diagnosis.findings import Finding, ms, pct
from playground.diagnosis.session import SessionDiagnosis, TurnDiagnosis

BAR_WIDTH = 40  # characters of the stacked bar in the report


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def stacked_bar(t: TurnDiagnosis, width: int = BAR_WIDTH) -> str:
    """The breakdown as one line of letters, each stage as wide as its share (at least one)."""
    total = t.breakdown.total_ms
    if total <= 0:
        return ""
    return "".join(stage_letter(s.key) * max(round(width * s.ms / total), 1) for s in t.breakdown.stages if s.ms > 0)


STAGE_LETTERS = {"endpointing": "E", "stt": "S", "llm": "L", "chunker": "C", "handoff": "H", "tts": "T",
                 "to_playback": "P", "silence": "_", "device": "D", "agent": "A", "network": "N",
                 "agent_network": "A", "residual": "r"}


def stage_letter(key: str) -> str:
    return STAGE_LETTERS.get(key, "?")


def finding_lines(f: Finding) -> list[str]:
    lines = [f"**{f.severity}** {_cell(f.title)}", ""]
    lines += [f"- {_cell(fact.label)}: {_cell(fact.value)} ({_cell(fact.source)})" for fact in f.facts]
    lines.append(f"- cause: {_cell(f.cause)}")
    lines.append(f"- setting: `{f.setting}`" if f.setting else "- setting: none (the engine's own)")
    saving = f" (saves {ms(f.what_if.saving_ms)}; {f.what_if.basis})" if f.what_if.saving_ms is not None else ""
    lines.append(f"- what-if: {_cell(f.what_if.text)}{saving}")
    lines.append("")
    return lines


def turn_lines(t: TurnDiagnosis) -> list[str]:
    x = t.evidence
    b = t.breakdown
    lines = [f"## Turn {t.turn} ({x.kind}): \"{_cell(x.text[:80])}\"", ""]
    short = "" if b.complete else f" (stops short: {b.missing})"
    lines.append(f"Waited **{ms(b.total_ms)}** from {b.start_label} to {b.end_label}{short}.")
    lines.append("")
    if b.stages:
        lines += [f"`{stacked_bar(t)}`", "", "| stage | ms | share | setting |", "| --- | ---: | ---: | --- |"]
        lines += [f"| {stage_letter(s.key)} {s.label} | {s.ms:,.1f} | {pct(s.ms, b.total_ms)} | "
                  f"{'`' + s.setting + '`' if s.setting else '-'} |" for s in b.stages]
        lines.append("")
    if not t.findings:
        lines += ["No findings.", ""]
    for f in t.findings:
        lines += finding_lines(f)
    return lines


def summary_lines(d: SessionDiagnosis) -> list[str]:
    lines = ["## Session summary", "", "| metric | turns | p50 ms | p90 ms |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {label} | {n} | {ms(p50).removesuffix(' ms')} | {ms(p90).removesuffix(' ms')} |"
              for label, (n, p50, p90) in d.percentiles.items()]
    lines += ["", "Settings that would save the most:", ""]
    if not d.top_settings:
        lines.append("- none: no finding computed a saving")
    for i, s in enumerate(d.top_settings, 1):
        turns = ", ".join(str(n) for n in s.turns)
        lines.append(f"{i}. `{s.setting}`: {ms(s.saving_ms)} over turn(s) {turns} ({'; '.join(s.bases)})")
    lines.append("")
    return lines


def markdown(d: SessionDiagnosis, source: str) -> str:
    counts = {sev: sum(1 for t in d.turns for f in t.findings if f.severity == sev) for sev in ("CRITICAL", "WARNING", "INFO")}
    lines = [f"# Diagnosis of {source}", "",
             f"{len(d.turns)} turn(s) · preset `{d.facts.preset_name}` · " +
             ", ".join(f"{n} {sev}" for sev, n in counts.items()), ""]
    for t in d.turns:
        lines += turn_lines(t)
    lines += summary_lines(d)
    return "\n".join(lines)
