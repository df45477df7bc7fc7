"""A folder's files belong to their owner: the marker (`nasframe.json`) a command writes first, the run
identity that checkpoints, history and best.json carry and that resume checks, the order of the
history's records, and folders made before markers existed (run-directory format 2), which still resume.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import run_outcome, toy_argv

from nasframe.common.ownership import MARKER, identity_of, read_owner
from nasframe.search.config import merge_config, resolve, run_identity

TRAIN = ["--space", "core_toy", "--arch", "all_first", "--set", "recipe.epochs=1", "--set", "data.limit=64", "--quiet",
         "--no-tensorboard"]  # fmt: skip


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` and its bytes (what must stay as it was)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def toy_run(cli, core_toy: str, out: Path, *extra: object) -> None:
    code, _, err = cli(*toy_argv(core_toy, "--budget", 6, "--set", "run.checkpoint_every=1", "--set",
                                 "run.tensorboard=false", *extra, "--out", out))  # fmt: skip
    assert code == 0, err


def interrupted(cli, core_toy: str, out: Path, monkeypatch, after: int = 4, *extra: object) -> None:
    """A 6-evaluation toy run stopped while telling evaluation `after` + 1: checkpoint.pt covers `after`
    evaluations, checkpoint.prev.pt `after` - 1."""
    from nasframe.strategies.random_search import RandomSearch

    calls = {"n": 0}
    real = RandomSearch.tell

    def tell(self, arch, result):
        calls["n"] += 1
        if calls["n"] == after + 1:
            raise KeyboardInterrupt
        return real(self, arch, result)

    with monkeypatch.context() as m:
        m.setattr(RandomSearch, "tell", tell)
        code, _, err = cli(*toy_argv(core_toy, "--budget", 6, "--set", "run.checkpoint_every=1", "--set",
                                     "run.tensorboard=false", *extra, "--out", out))  # fmt: skip
    assert code == 130, err
    assert len((out / "history.jsonl").read_text().splitlines()) == after


def last_error(err: str) -> str:
    assert "Traceback" not in err, err
    assert err.count("nasframe: error:") == 1, err
    return err.strip().splitlines()[-1]


# ---- defect 1: folder ownership ----------------------------------------------------------------------------------
def test_train_refuses_a_search_runs_folder_and_leaves_it_resumable(cli, core_toy, tmp_path):
    run = tmp_path / "r"
    toy_run(cli, core_toy, run)
    before = files_of(run)
    # a finished run keeps the one checkpoint `resume --budget` extends it from
    assert {k for k in before if k.startswith("checkpoint")} == {"checkpoint.pt"}
    code, _, err = cli("train", "--plugin", core_toy, *TRAIN, "--out", run)
    assert code == 2 and f"{run} holds a run ({MARKER}); a training is written only into" in last_error(err)
    assert files_of(run) == before
    code, _, err = cli("resume", run, "--budget", 8, "--quiet")
    assert code == 0, err


def test_run_refuses_a_training_folder(cli, core_toy, tmp_path):
    train = tmp_path / "t"
    code, _, err = cli("train", "--plugin", core_toy, *TRAIN, "--out", train)
    assert code == 0, err
    before = files_of(train)
    code, _, err = cli(*toy_argv(core_toy, "--budget", 2, "--out", train))
    assert code == 2 and f"{train} holds a training ({MARKER}); a run is written only into" in last_error(err)
    assert files_of(train) == before


@pytest.mark.parametrize("outcome", ["succeeds", "fails"])
def test_a_folder_of_the_users_own_files_is_refused_untouched(cli, core_toy, tmp_path, monkeypatch, outcome):
    folder = tmp_path / "mine"
    (folder / "tensorboard").mkdir(parents=True)
    (folder / "tensorboard" / "events.out").write_bytes(b"my events")
    (folder / "checkpoint.pt").write_bytes(b"my weights")
    (folder / "run.json").write_text('{"mine": true}')
    before = files_of(folder)
    if outcome == "fails":  # a run that would fail in its first evaluation (before: it removed run.json, ...)
        monkeypatch.setenv("NASFRAME_FAULT", "evaluator.evaluate:raise:1")
    from test_plugin_faults import RUN

    argv = [*RUN, "--out", folder] if outcome == "fails" else [*toy_argv(core_toy, "--budget", 2, "--out", folder)[1:]]
    code, _, err = cli("run", *argv)
    assert code == 2
    line = last_error(err)
    assert f"{folder} holds files nasframe did not write (checkpoint.pt, run.json, tensorboard)" in line
    assert files_of(folder) == before and sorted(p.name for p in folder.iterdir()) == sorted(
        ["tensorboard", "checkpoint.pt", "run.json"]
    )


def test_compare_refuses_a_run_folder_and_a_run_refuses_a_comparison(cli, core_toy, tmp_path):
    run = tmp_path / "r"
    toy_run(cli, core_toy, run)
    before = files_of(run)
    compare = ["compare", "--strategies", "random", "--seeds", "1", "--budget", "2", "--space", "nb201", "--evaluator",
               "tabular", "--no-plot", "--no-tensorboard"]  # fmt: skip
    code, _, err = cli(*compare, "--out", run)
    assert code == 2 and "holds a run (nasframe.json); a comparison is written only into" in last_error(err)
    assert files_of(run) == before
    code, _, err = cli(*compare, "--out", tmp_path / "c")
    assert code == 0, err
    assert read_owner(tmp_path / "c").kind == "comparison"
    code, _, err = cli(*toy_argv(core_toy, "--budget", 2, "--out", tmp_path / "c"))
    assert code == 2 and "holds a comparison (nasframe.json)" in last_error(err)
    code, _, err = cli(*compare, "--out", tmp_path / "c")  # the same comparison again: its own folder
    assert code == 0 and "1 already done" in _, err


def test_a_failed_first_start_removes_only_what_it_made(cli, monkeypatch, tmp_path):
    from test_plugin_faults import RUN

    folder = tmp_path / "empty"
    folder.mkdir()  # the user's (empty) folder: it stays
    monkeypatch.setenv("NASFRAME_FAULT", "evaluator.evaluate:raise:1")
    code, _, err = cli("run", *RUN, "--out", folder)
    assert code == 2 and "evaluate() raised ValueError" in last_error(err)
    assert folder.is_dir() and list(folder.iterdir()) == []


# ---- defect 2: a checkpoint of another run -----------------------------------------------------------------------
def test_a_checkpoint_copied_from_another_run_is_set_aside_and_the_run_ends_as_its_own(
    cli, core_toy, tmp_path, monkeypatch
):
    toy_run(cli, core_toy, tmp_path / "full")
    interrupted(cli, core_toy, tmp_path / "other", monkeypatch, 4, "--seed", 3)  # same components and point, other seed
    run = tmp_path / "r"
    interrupted(cli, core_toy, run, monkeypatch)
    foreign = (tmp_path / "other" / "checkpoint.pt").read_bytes()
    (run / "checkpoint.pt").write_bytes(foreign)
    code, _, err = cli("resume", run, "--quiet")
    assert code == 0, err
    assert "checkpoint.pt: written by another run (identity" in err and "resuming from the checkpoint before" in err
    assert (run / "checkpoint.pt.damaged").read_bytes() == foreign
    assert run_outcome(run) == run_outcome(tmp_path / "full")


def test_checkpoints_of_another_run_only_are_refused_in_one_line(cli, core_toy, tmp_path, monkeypatch):
    interrupted(cli, core_toy, tmp_path / "other", monkeypatch, 4, "--seed", 3)  # both checkpoints of another run
    run = tmp_path / "r"
    interrupted(cli, core_toy, run, monkeypatch)
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        shutil.copy(tmp_path / "other" / name, run / name)
    before = files_of(run)
    code, _, err = cli("resume", run)
    assert code == 2 and "written by another run" in last_error(err) and "cannot be used either" in err
    assert files_of(run) == before


def test_a_best_json_of_another_run_is_recomputed(cli, core_toy, tmp_path):
    toy_run(cli, core_toy, tmp_path / "a")
    toy_run(cli, core_toy, tmp_path / "b", "--seed", 5)
    expected = json.loads((tmp_path / "a" / "best.json").read_text())
    shutil.copy(tmp_path / "b" / "best.json", tmp_path / "a" / "best.json")
    code, _, err = cli("show", tmp_path / "a")
    assert code == 2 and "best.json: damaged (written by another run" in last_error(err)
    code, _, err = cli("resume", tmp_path / "a", "--quiet")
    assert code == 0 and "kept as best.json.damaged" in err
    assert json.loads((tmp_path / "a" / "best.json").read_text())["final"] == expected["final"]


# ---- defect 3: the history's order ---------------------------------------------------------------------------------
def test_a_repeated_record_in_the_covered_history_falls_back_and_ends_identically(cli, core_toy, tmp_path, monkeypatch):
    toy_run(cli, core_toy, tmp_path / "full")
    run = tmp_path / "r"
    interrupted(cli, core_toy, run, monkeypatch)
    lines = (run / "history.jsonl").read_text().splitlines(keepends=True)
    damaged = "".join(lines[:3] + [lines[2]])  # record 3 replaced by a second copy of record 2
    (run / "history.jsonl").write_text(damaged)
    code, _, err = cli("resume", run, "--quiet")
    assert code == 0, err
    notes = [line for line in err.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "history.jsonl line 4: index 2 where 3 was expected" in notes[0]
    assert (run / "history.jsonl.damaged").read_text() == damaged
    assert run_outcome(run) == run_outcome(tmp_path / "full")


@pytest.mark.parametrize("damage", ["duplicated", "reordered"])
def test_a_history_out_of_order_before_both_checkpoints_is_one_line_and_changes_nothing(
    cli, core_toy, tmp_path, monkeypatch, damage
):
    run = tmp_path / "r"
    interrupted(cli, core_toy, run, monkeypatch)
    lines = (run / "history.jsonl").read_text().splitlines(keepends=True)
    if damage == "duplicated":
        lines.insert(1, lines[1])
    else:
        lines[1], lines[2] = lines[2], lines[1]
    (run / "history.jsonl").write_text("".join(lines))
    before = files_of(run)
    code, _, err = cli("resume", run, "--quiet")
    assert code == 2
    assert "history.jsonl line 3: index" in last_error(err) or "history.jsonl line 2: index" in last_error(err)
    assert files_of(run) == before


def test_a_repeated_record_after_the_checkpoint_is_kept_aside_with_a_note(cli, core_toy, tmp_path, monkeypatch):
    toy_run(cli, core_toy, tmp_path / "full")
    run = tmp_path / "r"
    interrupted(cli, core_toy, run, monkeypatch)
    text = (run / "history.jsonl").read_text()
    damaged = text + text.splitlines(keepends=True)[-1]  # the last record twice
    (run / "history.jsonl").write_text(damaged)
    code, _, err = cli("resume", run, "--quiet")
    assert code == 0, err
    assert "line 5: index 3 where 4 was expected" in err and "kept history.jsonl.damaged" in err
    assert (run / "history.jsonl.damaged").read_text() == damaged
    assert run_outcome(run) == run_outcome(tmp_path / "full")


# ---- the identity ----------------------------------------------------------------------------------------------------
def test_the_identity_ignores_what_resume_may_change_and_nothing_else(core_toy):
    base = {"plugins": [core_toy], "strategy": "random", "space": "core_toy", "evaluator": "core_toy_eval"}
    same = run_identity(resolve(merge_config(base)))
    settable = ["run.device=cpu", "run.max_evaluations=99", "run.progress=false", "run.executor=ray",
                "run.checkpoint_every=3", "run.evaluation_timeout_s=5", "data.workers=1", "run.out=elsewhere",
                "constraints.max_rejections=7", "run.tensorboard=false"]  # fmt: skip
    for item in settable:
        assert run_identity(resolve(merge_config(base, sets=[item]))) == same, item
    for item in ["run.seed=1", "evaluator.noise=0.1", "strategy.dedup=false", "space.decisions=5", "run.parallel=2",
                 "data.limit=100", "run.threads=2"]:  # fmt: skip
        assert run_identity(resolve(merge_config(base, sets=[item]))) != same, item


def test_a_fresh_run_carries_its_identity_everywhere_and_resume_set_keeps_it(cli, core_toy, tmp_path):
    run = tmp_path / "r"
    toy_run(cli, core_toy, run)
    owner = read_owner(run)
    assert owner is not None and (owner.kind, owner.format, owner.adopted) == ("search run", 2, False)
    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert {r["run"] for r in history} == {owner.identity}
    assert json.loads((run / "best.json").read_text())["produced_by"]["run"] == owner.identity
    assert torch.load(run / "checkpoint.pt", weights_only=True)["run"] == owner.identity
    code, _, err = cli(
        "resume", run, "--budget", 8, "--set", "run.device=cpu", "--set", "run.progress=false", "--quiet"
    )
    assert code == 0, err
    history = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert len(history) == 8 and {r["run"] for r in history} == {owner.identity} and read_owner(run) == owner


# ---- folders made before markers existed (run-directory format 2 of nasframe 0.2) ------------------------------------
def as_before_markers(run: Path) -> None:
    """The folder as the previous nasframe wrote it: no marker, no identity in any record."""
    (run / MARKER).unlink()
    lines = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    (run / "history.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "run"}) + "\n" for r in lines)
    )
    for name in ("checkpoint.pt", "checkpoint.prev.pt"):
        if (run / name).exists():
            state = torch.load(run / name, weights_only=True)
            del state["run"]
            torch.save(state, run / name)
    if (run / "best.json").exists():
        best = json.loads((run / "best.json").read_text())
        del best["produced_by"]["run"]
        (run / "best.json").write_text(json.dumps(best))


def test_a_run_folder_of_format_2_without_a_marker_still_resumes_and_is_adopted(cli, core_toy, tmp_path, monkeypatch):
    toy_run(cli, core_toy, tmp_path / "full")
    run = tmp_path / "r"
    interrupted(cli, core_toy, run, monkeypatch)
    as_before_markers(run)
    code, _, err = cli(*toy_argv(core_toy, "--budget", 2, "--out", run))
    assert code == 2 and "already holds a run; use `nasframe resume" in last_error(err)
    code, _, err = cli("show", run)
    assert code == 0, err
    code, _, err = cli("resume", run, "--quiet")
    assert code == 0, err
    owner = read_owner(run)
    assert owner is not None and owner.adopted and owner.identity == read_owner(tmp_path / "full").identity

    def without_run(outcome):
        history, work, best = outcome
        return [{k: v for k, v in r.items() if k != "run"} for r in history], work, best

    assert without_run(run_outcome(run)) == without_run(run_outcome(tmp_path / "full"))
    code, _, err = cli("show", run)
    assert code == 0, err


def test_a_training_folder_without_a_marker_still_resumes(cli, core_toy, tmp_path):
    train = tmp_path / "t"
    code, _, err = cli("train", "--plugin", core_toy, *TRAIN, "--set", "recipe.epochs=2", "--out", train)
    assert code == 0, err
    (train / MARKER).unlink()
    (train / "model.json").unlink()  # as if killed before the end
    state = torch.load(train / "checkpoint.pt", weights_only=True)
    del state["run"]
    torch.save(state, train / "checkpoint.pt")
    code, _, err = cli("train", "--plugin", core_toy, "--resume", train, "--quiet")
    assert code == 0, err
    assert read_owner(train).adopted and (train / "model.json").exists()


def test_identity_of_is_order_independent():
    assert identity_of({"a": 1, "b": [1, 2]}) == identity_of({"b": [1, 2], "a": 1}) != identity_of({"a": 2})
