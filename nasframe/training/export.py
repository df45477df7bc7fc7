"""Load a trained (or a run's untrained) network and export it: `nasframe export` and `nasframe.load_model`.

A training folder (`nasframe train`'s, with model.json and model.safetensors) gives the trained network; a
run folder (best.json) gives the run's answer with fresh weights, which is said in one line. ONNX and
TorchScript files are checked before they are reported: the exported file is loaded back (ONNX by
onnxruntime) and its outputs compared with PyTorch's on the same seeded inputs.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nasframe.common.checkpoint import atomic_write_bytes, atomic_write_json
from nasframe.common.errors import ConfigError, NotSupported, RunDirError
from nasframe.common.loading import check_text_path
from nasframe.training.deployment import TORCHSCRIPT_EXTRA

if TYPE_CHECKING:  # imported where used: `nasframe export --help` and its argument errors load this without torch
    import torch
    from torch import nn

FORMATS = ("onnx", "torchscript", "json")
#: default file names inside the folder (not model.json: a training folder's own description)
_DEFAULT_NAME = {"onnx": "model.onnx", "torchscript": "model.pt", "json": "architecture.json"}
#: images in the batch the exported files are checked on
CHECK_BATCH = 2


@dataclass
class LoadedModel:
    """A network in eval mode and what is known about it."""

    model: nn.Module
    trained: bool
    input_shape: tuple[int, ...]
    info: dict[str, Any] = field(default_factory=dict)  # space, arch, export, recipe, metrics, counts


def load_model(folder: str | Path) -> LoadedModel:
    """The network of a training folder (its trained weights) or of a run folder (untrained)."""
    from nasframe.training.deployment import deployment_of_data
    from nasframe.training.plan import MODEL_JSON, TRAIN_JSON, WEIGHTS, TrainPlan, build_model
    from nasframe.training.weights import load_weights

    folder = Path(folder)
    if not folder.is_dir():
        raise RunDirError(f"{folder}: no such folder")
    if (folder / TRAIN_JSON).exists():
        if not (folder / MODEL_JSON).exists():  # the completion marker, written last
            raise RunDirError(
                f"{folder}: the training has not finished (no {MODEL_JSON}); continue it with: "
                f"nasframe train --resume {folder}"
            )
        if not (folder / WEIGHTS).exists():
            raise RunDirError(f"{folder}: {MODEL_JSON} says the training finished, but {WEIGHTS} is missing")
        from nasframe.common.loading import load_json

        meta = load_json(folder / MODEL_JSON, "", RunDirError)
        plan = TrainPlan.from_dict(meta, str(folder / MODEL_JSON))
        model, _, spec = build_model(plan)
        load_weights(model, folder / WEIGHTS)
        model.eval()
        info = {k: meta.get(k) for k in ("space", "space_options", "arch", "arch_source", "export", "params", "macs")}
        info.update(recipe_name=plan.recipe_name, recipe=plan.recipe, metrics=meta.get("metrics"))
        if isinstance(meta.get("input"), dict) and isinstance(meta.get("class_names"), list):
            info.update(input=meta["input"], class_names=meta["class_names"])
        else:  # a model.json written before these fields: the training's data set gives them
            info.update(deployment_of_data(plan.data_options))
        return LoadedModel(model, True, spec.input_shape, info)
    if (folder / "best.json").exists() or (folder / "run.json").exists():
        return _run_model(folder)
    raise RunDirError(f"{folder}: neither a training folder ({TRAIN_JSON}) nor a run folder (best.json)")


def _run_model(folder: Path) -> LoadedModel:
    import torch

    from nasframe.common.model_stats import count_macs, count_parameters
    from nasframe.data import DataSource
    from nasframe.search.answer import answer_of, network_of_run
    from nasframe.search.config import merge_config, resolve
    from nasframe.search.rundir import RunDir
    from nasframe.training.deployment import deployment_of_data

    files = RunDir(folder)
    files.require_run()
    if not files.is_finished():
        raise RunDirError(f"{folder}: the run has not finished (no best.json); resume it first")
    result = files.read_result()
    arch, where = answer_of(result)
    config = resolve(merge_config(files.read_config()))
    space = config.space_class(config.options["space"])
    spec = DataSource(config.options["data"], seed=0).spec
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = network_of_run(folder)
    model.eval()
    checked = space.validate(arch)
    info = {
        "space": config.names["space"],
        "arch": checked.to_dict(),
        "arch_source": f"{folder / 'best.json'}: {where}",
        "export": space.export(checked),
        "params": count_parameters(model),
        "macs": count_macs(model, spec.input_shape),
        **deployment_of_data(config.options["data"]),
    }
    return LoadedModel(model, False, spec.input_shape, info)


def _check_input(loaded: LoadedModel) -> torch.Tensor:
    import torch

    gen = torch.Generator().manual_seed(0)
    return torch.randn(CHECK_BATCH, *loaded.input_shape, generator=gen)


def _logits(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, (tuple, list)) else out


def export_onnx(loaded: LoadedModel, path: Path) -> float:
    """Write an ONNX file (dynamic batch size) and return the largest absolute difference between
    onnxruntime's and PyTorch's logits on a seeded batch."""
    import warnings

    import numpy as np
    import torch

    try:
        import onnx  # noqa: F401  (torch's exporter needs it)
        import onnxruntime
    except ImportError:
        raise NotSupported(
            "export: ONNX needs the onnx and onnxruntime packages: pip install 'nasframe[export]'"
        ) from None

    x = _check_input(loaded)
    model = loaded.model.eval()
    with torch.no_grad():
        expected = _logits(model(x)).numpy()
    buf = io.BytesIO()  # in memory until checked: a kill leaves no half-written file behind
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter announces its deprecation
        torch.onnx.export(
            model,
            (x,),
            buf,  # type: ignore[arg-type]  # the TorchScript exporter writes to a file object too (its docs)
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    data = _with_onnx_metadata(buf.getvalue(), loaded)
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x.numpy()})[0]
    # a temporary file of its own, renamed: two exports never collide; one killed before leaves none behind
    atomic_write_bytes(path, data, tagged=True)
    return float(np.abs(got - expected).max())


def _with_onnx_metadata(data: bytes, loaded: LoadedModel) -> bytes:
    """The ONNX file's bytes with the input description and class names as its metadata
    (`metadata_props`, JSON text)."""
    import json

    import onnx

    from nasframe.training.deployment import ONNX_KEYS

    proto = onnx.load_from_string(data)
    for key, field_name in zip(ONNX_KEYS, ("input", "class_names")):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(loaded.info.get(field_name))
    return proto.SerializeToString()


def export_torchscript(loaded: LoadedModel, path: Path) -> float:
    """Trace the network to TorchScript, load the file back and return the largest absolute difference
    of its logits from the original's on a seeded batch."""
    import warnings

    import torch

    x = _check_input(loaded)
    model = loaded.model.eval()
    buf = io.BytesIO()  # in memory until checked, as for ONNX
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch announces TorchScript's deprecation per call
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # shape checks traced as constants: the
        # exported file is for the input size it was traced at, which the comparison below checks
        expected = _logits(model(x))
        traced = torch.jit.trace(model, (x,), check_trace=False)
        torch.jit.save(traced, buf, _extra_files={TORCHSCRIPT_EXTRA: _deployment_json(loaded)})
        buf.seek(0)
        reloaded = torch.jit.load(buf, map_location="cpu")
        got = _logits(reloaded(x))
    atomic_write_bytes(path, buf.getvalue(), tagged=True)
    return float((got - expected).abs().max())


def _deployment_json(loaded: LoadedModel) -> str:
    import json

    return json.dumps({"input": loaded.info.get("input"), "class_names": loaded.info.get("class_names")})


def export_json(loaded: LoadedModel, path: Path) -> None:
    """Architecture, the space's own export (e.g. the DARTS genotype text), counts, the input the network
    expects and its class names, and for a trained network its recipe and test metrics."""
    info = {"trained": loaded.trained, "input_shape": list(loaded.input_shape), **loaded.info}
    atomic_write_json(path, info, tagged=True)


def export(folder: str | Path, fmt: str, out: str | Path | None = None) -> tuple[Path, LoadedModel, float | None]:
    """Export the network of `folder` as `fmt`; returns the file, the model and (ONNX, TorchScript) the
    largest absolute output difference of the file from PyTorch."""
    import torch

    if fmt not in FORMATS:
        raise ConfigError(f"export: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    loaded = load_model(folder)
    path = check_text_path(Path(out) if out is not None else Path(folder) / _DEFAULT_NAME[fmt], "--out")
    if path.is_dir():
        raise ConfigError(f"export: --out {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise ConfigError(f"export: the folder of --out {path} does not exist")
    if fmt == "json":
        export_json(loaded, path)
        return path, loaded, None
    try:
        diff = export_onnx(loaded, path) if fmt == "onnx" else export_torchscript(loaded, path)
    except (RuntimeError, torch.onnx.errors.OnnxExporterError) as exc:
        first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        raise NotSupported(f"export: this network cannot be exported to {fmt}: {first}") from None
    return path, loaded, diff
