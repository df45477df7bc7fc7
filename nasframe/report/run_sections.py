"""The sections of a run folder's report: the answer, the search, the architecture, the strategy's own
state, the Pareto front, the supernet work and the provenance, each read from the folder's records."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from nasframe.common.errors import NasframeError
from nasframe.report import run_figures
from nasframe.report.page import Section, escape, figure_html, image_html, paragraph, pre_html, table_html
from nasframe.search.answer import AnswerDescription, answer_of, describe_answer
from nasframe.search.records import EvaluationRecord, RunResult
from nasframe.search.rundir import RunDir

#: the keys of best.json a Pareto front is read from (the first present), as a list of points or as
#: {"objectives": [...], "points": [...]}; a point holds its objective values, or them under "metrics"
PARETO_KEYS = ("pareto_front", "pareto", "front")


def run_sections(folder: Path) -> tuple[str, str, list[Section]]:
    """(title, subtitle, sections) of the report of the run in `folder`."""
    from nasframe.search.config import merge_config, resolve

    files = RunDir(folder)
    files.require_run()
    config = resolve(merge_config(files.read_config()))
    names = config.names
    result = files.read_result() if files.is_finished() else None
    records, damaged = files.readable_evaluations()
    space = config.space_class(config.options["space"])
    percent = config.evaluator_class.val_acc_is_percent if result is None or result.final is None else (
        result.final.val_acc_percent
    )  # fmt: skip
    unit = "%" if percent else "score"
    title = f"{names['strategy']} / {names['space']} / {names['evaluator']}"
    subtitle = (
        f"run {folder}: data {config.options['data'].name}, seed {config.options['run'].seed}, "
        f"{len(records)} evaluations" + ("" if result is not None else " (not finished)")
    )
    sections = [
        _answer(result, records, unit),
        _search(records, unit, damaged),
        _architecture(space, result, records),
        _strategy(records, space, names["strategy"]),
        _pareto(files),
        _work(files, names["evaluator"]),
        _provenance(files, result),
    ]
    return f"nasframe report: {title}", subtitle, sections


def _answer(result: RunResult | None, records: list[EvaluationRecord], unit: str) -> Section:
    section = Section("answer", "The answer")
    if result is None or result.final is None:
        top = max((r for r in records if r.val_acc is not None), key=lambda r: r.val_acc or 0.0, default=None)
        state = "The run has not finished: it has no answer yet." if result is None else "The run found no answer."
        section.add(paragraph(state, "headline"))
        if top is not None:
            section.add(paragraph(f"Best so far: evaluation #{top.index}, val_acc {top.val_acc:.2f} {unit}."))
        return section
    answer = describe_answer(result)
    section.add(paragraph(f"The answer is {answer.what}.", "headline"))
    section.add(_figures_table(answer))
    section.add("<ul>" + "".join(f"<li>{escape(line)}</li>" for line in answer.why) + "</ul>")
    final = result.final
    if final.params is not None:
        section.add(paragraph(f"Parameters: {final.params:,}; MACs: {final.macs or 0:,}."))
    texts = {k: v for k, v in final.export.items() if isinstance(v, (str, int, float))}
    if texts:
        section.add(pre_html("\n".join(f"{k}: {v}" for k, v in texts.items())))
    if result.alternatives:
        rows = [
            (name, "yes" if alt.get("evaluated") else "no", _numbers(alt.get("metrics")), _numbers(alt.get("held_out")))
            for name, alt in result.alternatives.items()
        ]
        section.add("<h3>The strategy's other possible answers (not the answer)</h3>")
        section.add(table_html(["alternative", "evaluated in the search", "search numbers", "held out"], rows))
    return section


def _figures_table(answer: AnswerDescription) -> str:
    rows = [(f.name, f"{f.value:.4g}", f.unit or "-", f.where, answer.measured_by) for f in answer.figures]
    rows += [
        (f.name, f"{f.value:.4g}", f.unit or "-", f.where, "held out: never seen by the search")
        for f in answer.held_out
    ]
    if not rows:
        return paragraph(f"No numbers: {answer.measured_by}.", "note")
    return table_html(["metric", "value", "unit", "measured on", "how"], rows)


def _numbers(values: Any) -> str:
    if not isinstance(values, dict) or not values:
        return "-"
    return ", ".join(f"{k}={v:.4g}" for k, v in values.items() if isinstance(v, (int, float)))


def _search(records: list[EvaluationRecord], unit: str, damaged: str | None) -> Section:
    section = Section("search", "The search")
    failed = sum(r.status == "failed" for r in records)
    infeasible = sum(r.status == "infeasible" for r in records)
    section.add(paragraph(f"{len(records)} evaluations: {failed} failed, {infeasible} rejected by the constraints."))
    if damaged:
        section.add(paragraph(f"note: {damaged}", "note"))
    fig = run_figures.search_curve(records, unit)
    if fig is None:
        return section.add(paragraph("Nothing was evaluated yet.", "note"))
    return section.add(
        figure_html(fig, f"Search-val accuracy (val_acc, {unit}) of every evaluation and the best so far.")
    )


def _architecture(space: Any, result: RunResult | None, records: list[EvaluationRecord]) -> Section:
    section = Section("architecture", "The architecture")
    if result is not None and result.final is not None:
        arch, where = answer_of(result)
        what = f"The answer (best.json {where})"
    else:
        ok = [r for r in records if r.val_acc is not None]
        if not ok:
            return section.add(paragraph("No architecture yet.", "note"))
        top = max(ok, key=lambda r: r.val_acc or 0.0)
        arch, what = top.arch, f"The best so far (evaluation #{top.index})"
    checked = space.validate(arch)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "arch.png"
        try:
            space.plot(checked, str(path))
            section.add(image_html(path.read_bytes(), "image/png", f"{what}, drawn by the {space.name} space."))
        except NasframeError as exc:
            section.add(paragraph(f"{what}; {exc}, so its decisions are listed instead.", "note"))
    rows = [(k, v) for k, v in checked.to_dict().items()]
    listing = table_html(["decision", "choice"], rows)
    return section.add(f"<details><summary>its {len(rows)} decisions</summary>{listing}</details>")


def _strategy(records: list[EvaluationRecord], space: Any, strategy: str) -> Section:
    section = Section("strategy", "The strategy's own state")
    decisions = list(space.decisions)
    same = all(list(d.choices) == list(decisions[0].choices) for d in decisions) if decisions else False
    choices = [str(c) for c in decisions[0].choices] if same else None
    drawn = run_figures.strategy_state(records, [d.name for d in decisions], choices)
    if not drawn:
        return section.add(
            paragraph(f"{strategy} logs no state of its own (history.jsonl has no strategy field).", "note")
        )
    section.add(paragraph(f"What {strategy} learned, from the strategy field of history.jsonl."))
    for fig, caption in drawn:
        section.add(figure_html(fig, caption))
    return section


def _pareto(files: RunDir) -> Section:
    section = Section("pareto", "Pareto front")
    front, objectives = read_front(files.path / RunDir.BEST) if files.is_finished() else (None, [])
    fig = run_figures.pareto_front(front, objectives) if front else None
    if fig is None or front is None:
        return section.add(paragraph("This run has no Pareto front (best.json holds none).", "note"))
    section.add(figure_html(fig, f"The run's Pareto front: {objectives[0]} against {objectives[1]}."))
    return section.add(table_html(objectives, [[p.get(o, "") for o in objectives] for p in front]))


def read_front(best: Path) -> tuple[list[dict[str, Any]] | None, list[str]]:
    """The Pareto front of a best.json (see PARETO_KEYS) as flat points and the objective names."""
    from nasframe.common.errors import RunDirError
    from nasframe.common.loading import load_json

    data = load_json(best, "", RunDirError)
    raw = next((data[k] for k in PARETO_KEYS if data.get(k)), None) if isinstance(data, dict) else None
    objectives: list[str] = []
    if isinstance(raw, dict):
        objectives = [str(o) for o in raw.get("objectives", [])]
        raw = raw.get("points")
    if not isinstance(raw, list) or not raw:
        return None, []
    points = []
    for p in raw:
        if isinstance(p, dict):
            flat = {k: v for k, v in p.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            flat.update({k: v for k, v in (p.get("metrics") or {}).items() if isinstance(v, (int, float))})
            points.append(flat)
    if not objectives and points:
        objectives = sorted(points[0])[:2]
    return points, objectives


def _work(files: RunDir, evaluator: str) -> Section:
    section = Section("work", "Supernet work")
    work = list(files.work_records())
    if not work:
        return section.add(paragraph(f"No supernet work: {evaluator} measures each architecture on its own.", "note"))
    phases: dict[str, list[float]] = {}
    for w in work:
        phases.setdefault(w.phase, [0.0, 0.0])
        phases[w.phase][0] += w.epochs
        phases[w.phase][1] += float(w.cost.get("seconds", 0.0))
    section.add(table_html(["phase", "epochs", "seconds"], [(k, f"{e:g}", f"{s:.1f}") for k, (e, s) in phases.items()]))
    fig = run_figures.supernet_work(work)
    if fig is not None:
        section.add(figure_html(fig, "Each piece of supernet training (work.jsonl): training loss and learning rate."))
    return section


def _provenance(files: RunDir, result: RunResult | None) -> Section:
    section = Section("provenance", "Provenance")
    info = files.read_info() or {}
    recorded = info.get("sessions")
    sessions: list[Any] = recorded if isinstance(recorded, list) else []
    keys = ("started", "nasframe", "torch", "python", "device", "threads", "cpu")
    rows = [
        [s.get(k, "") for k in keys] + [" ".join(map(str, s.get("command") or []))]
        for s in sessions
        if isinstance(s, dict)
    ]
    section.add("<h3>Sessions (run.json)</h3>" + table_html([*keys, "command"], rows))
    if result is not None:
        cost = result.cost
        section.add(paragraph(
            f"Cost: {cost['seconds']:.1f} s computing, {cost['epochs']:g} epochs, {cost['wall_seconds']:.1f} s wall; "
            f"stopped: {result.stopped_because}."
        ))  # fmt: skip
        if result.data_split:
            section.add(paragraph(f"Search split: {json.dumps(result.data_split)}"))
    section.add("<h3>Configuration (config.yaml)</h3>" + pre_html((files.path / RunDir.CONFIG).read_text()))
    return section
