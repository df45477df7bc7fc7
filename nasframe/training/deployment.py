"""What a deployed network needs besides its weights: the input it expects (size, layout, the
normalisation it was trained with) and the name of each output class.

One mapping, the same in model.json, in an exported architecture.json, in the ONNX file's metadata
(`metadata_props`, JSON text under the keys of `ONNX_KEYS`) and in a TorchScript file's extra file
`nasframe.json`, so that whoever feeds the network reads the numbers from the file itself:

    {"input": {"shape": [C, H, W], "layout": "NCHW", "pixel_scale": 255.0, "mean": [...], "std": [...],
               "formula": "(pixels / pixel_scale - mean) / std, per channel"},
     "class_names": ["airplane", ...]}
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nasframe.data import DataOptions, DataSpec

#: the keys of the ONNX metadata (metadata_props): each holds JSON text
ONNX_KEYS = ("nasframe.input", "nasframe.class_names")
#: the TorchScript extra file holding the whole mapping (`torch.jit.load(path, _extra_files={...})`)
TORCHSCRIPT_EXTRA = "nasframe.json"
#: images are 0..255 values divided by this before the per-channel normalisation
PIXEL_SCALE = 255.0


def deployment(spec: DataSpec, mean: Sequence[float], std: Sequence[float]) -> dict[str, Any]:
    """The input description and class names of a network trained on `spec` with `mean`/`std`."""
    return {
        "input": {
            "shape": list(spec.input_shape),
            "layout": "NCHW",
            "pixel_scale": PIXEL_SCALE,
            "mean": [float(m) for m in mean],
            "std": [float(s) for s in std],
            "formula": "(pixels / pixel_scale - mean) / std, per channel",
        },
        "class_names": spec.names(),
    }


def deployment_of_data(options: DataOptions) -> dict[str, Any]:
    """The deployment mapping of a data set's networks, reading its normalisation statistics (for a set
    that computes them, digits, this loads it; a streaming set opens its file list)."""
    from nasframe.data import DataSource

    source = DataSource(options, seed=0)
    search = source.search()
    mean = search.mean.flatten().tolist()
    std = search.std.flatten().tolist()
    return deployment(source.spec, mean, std)


def channel_stats(values: Any) -> list[float]:
    """A (1, C, 1, 1) statistics tensor as a list of C floats."""
    return [float(v) for v in values.flatten().tolist()]
