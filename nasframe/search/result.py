"""The run's result (best.json): its answer described with counts, a final evaluation when asked
for, held-out metrics and the space's export, beside the best evaluated architecture and the
strategy's alternatives."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, cast

import torch

from nasframe.common.errors import CapabilityError, NasframeError
from nasframe.common.progress import Stopwatch
from nasframe.core.pareto import MultiObjective
from nasframe.core.requests import Evaluation, Request, as_request
from nasframe.core.space import Arch
from nasframe.search.components import Components
from nasframe.search.config import ResolvedConfig
from nasframe.search.executor import Executor
from nasframe.search.loop_state import LoopState
from nasframe.search.pool import evaluate_with_limit
from nasframe.search.records import EvaluationRecord, FinalArch, RunResult
from nasframe.search.rundir import RunDir, provenance


def arch_key(arch: dict[str, Any]) -> str:
    """One string per architecture (plain data from history or `Arch.to_dict`), order-independent."""
    return json.dumps(arch, sort_keys=True)


class ResultWriter:
    """Describes a finished search and writes best.json."""

    def __init__(
        self,
        config: ResolvedConfig,
        parts: Components,
        executor: Executor,
        files: RunDir,
        admit: Callable[[Request], Request],
    ):
        self.config = config
        self.run_opts = config.options["run"]
        self.parts = parts
        self.executor = executor
        self.files = files
        self.admit = admit

    def result(self, state: LoopState, clock: Stopwatch, device: torch.device, command: list[str] | None) -> RunResult:
        """Pick the final architecture and describe it; best.json gets what this returns."""
        s, parts = state, self.parts
        final, source = parts.strategy.final(), "strategy"
        best = self.files.evaluation(s.best_index) if s.best_index is not None else None
        if final is None and best is not None:
            final, source = parts.space.validate(best.arch), "best evaluated"
        searched = self._search_records()
        final_info = self._describe_final(final, source, searched, s.evaluations) if final is not None else None
        return RunResult(
            strategy=self.config.names["strategy"],
            space=self.config.names["space"],
            evaluator=self.config.names["evaluator"],
            data=self.config.options["data"].name,
            seed=self.run_opts.seed,
            evaluations=s.evaluations,
            stopped_because=s.stopped_because,
            cost={"seconds": s.total_seconds, "epochs": s.total_epochs, "wall_seconds": clock()},
            final=final_info,
            best_evaluated=None if best is None else {"index": best.index, "arch": best.arch, "metrics": best.metrics},
            alternatives=self._describe_alternatives(searched),
            infeasible=s.infeasible,
            work={"seconds": s.work_seconds, "epochs": s.work_epochs, "requests": s.work_done},
            data_split=parts.data.split_record,
            produced_by=provenance(str(device), torch.get_num_threads(), command),
            latency=None if parts.costs.latency is None else parts.costs.latency.describe(),
            **self._front(searched),
        )

    def _front(self, searched: dict[str, EvaluationRecord]) -> dict[str, Any]:
        """best.json's `objectives` and `pareto` for a strategy that searched several objectives."""
        strategy = self.parts.strategy
        archive = strategy.pareto_archive() if isinstance(strategy, MultiObjective) else None
        if archive is None:
            return {}
        members = []
        for member in archive.front():
            rec = searched.get(arch_key(member.arch.to_dict()))
            entry: dict[str, Any] = {"arch": member.arch.to_dict(), "index": rec.index if rec else None}
            entry.update(zip(archive.objectives, member.values))
            if rec is not None and rec.latency_source is not None:
                entry["latency_source"] = rec.latency_source
            members.append(entry)
        return {"objectives": list(archive.objectives), "pareto": members}

    def _search_records(self) -> dict[str, EvaluationRecord]:
        """The last successful search evaluation of every architecture, keyed by `arch_key`."""
        return {arch_key(rec.arch): rec for rec in self.files.evaluations() if rec.status == "ok"}

    def _describe_alternatives(self, searched: dict[str, EvaluationRecord]) -> dict[str, Any]:
        """The strategy's other possible answers: each with whether the search evaluated it, its search
        metrics if so, and its held-out metrics (so best.json shows what the other answer would have scored)."""
        parts = self.parts
        out: dict[str, Any] = {}
        for name, arch in parts.strategy.final_alternatives().items():
            target = parts.space.validate(arch)
            rec = searched.get(arch_key(target.to_dict()))
            out[name] = {
                "arch": target.to_dict(),
                "evaluated": rec is not None,
                "metrics": rec.metrics if rec else None,
                "held_out": self.executor.held_out(target, rec.index if rec else None),
            }
        return out

    def _describe_final(self, final: Arch, source: str, searched: dict[str, EvaluationRecord], index: int) -> FinalArch:
        """Counts, an evaluation at the end and held-out metrics of the run's answer: the space's derived
        architecture when its export gives one (the DARTS genotype), else the final architecture."""
        parts = self.parts
        export = parts.space.export(final, parts.strategy.final_weights())
        derived = export.get("derived_arch")
        answer, where = (
            (parts.space.validate(derived), "export.derived_arch") if isinstance(derived, dict) else (final, "arch")
        )
        evaluated = searched.get(arch_key(answer.to_dict()))
        params: int | None
        macs: int | None
        try:
            params, macs = parts.costs.counts(answer)
        except NasframeError:
            params = macs = None
        latency = parts.costs.latency
        mode = self.run_opts.final_evaluation
        final_eval = None
        if mode == "always" or (mode == "auto" and evaluated is None):
            final_eval = self._final_evaluation(answer, index)
        metrics, metrics_source, measured = _answer_metrics(evaluated, final_eval, index)
        evaluator = parts.evaluator
        held_out = self.executor.held_out(answer, measured)
        return FinalArch(
            arch=final.to_dict(),
            source=source,
            answer=where,
            metrics=metrics,
            params=params,
            macs=macs,
            final_evaluation=final_eval,
            held_out=held_out,
            export=export,
            evaluated=evaluated is not None,
            metrics_source=metrics_source,
            metrics_index=evaluated.index if evaluated else None,
            metrics_split=evaluator.search_split() if metrics is not None else None,
            held_out_split=evaluator.held_out_split() if held_out else None,
            val_acc_percent=type(evaluator).val_acc_is_percent,
            latency_ms=None if latency is None else latency.latency_ms(answer),
            latency_source=None if latency is None else latency.source,
        )

    def _final_evaluation(self, answer: Arch, index: int) -> dict[str, Any]:
        """The answer measured the way the strategy's search measured (`Strategy.final_evaluation`)."""
        request = self.admit(as_request(self.parts.strategy.final_evaluation(answer)))
        if not request.is_evaluation:
            raise CapabilityError(
                f"strategy {self.config.names['strategy']!r}: final_evaluation must give an "
                f"architecture, Evaluate or ScoreShared, not {request.kind}"
            )
        outcome = evaluate_with_limit(
            self.executor, cast(Evaluation, request), index, self.run_opts.evaluation_timeout_s
        )
        return {
            "request": request.kind,
            "status": outcome.status,
            "metrics": outcome.metrics,
            "reason": outcome.reason,
            "cost": {"seconds": outcome.cost.seconds, "epochs": outcome.cost.epochs},
        }


def _answer_metrics(
    searched: EvaluationRecord | None, end: dict[str, Any] | None, end_index: int
) -> tuple[dict[str, float] | None, str | None, int | None]:
    """The answer's numbers, where they come from, and the index of the evaluation that measured them:
    the final evaluation when one ran and succeeded (asked for, or the answer was never evaluated), else
    the search's evaluation of it, else none."""
    if end is not None and end.get("status") == "ok":
        return dict(end["metrics"]), "final_evaluation", end_index
    if searched is not None:
        return dict(searched.metrics), "search", searched.index
    return None, None, None
