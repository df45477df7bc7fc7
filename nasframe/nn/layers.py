"""Mutable layers: `Conv2d`, `BatchNorm2d` and `Linear` whose widths and kernel size may be choices.

Each takes torch's arguments, any of the size arguments being a choice (or arithmetic on choices). Where
none is, or inside the network of one architecture, the constructor returns torch's own layer of the
chosen shape, so a frozen network holds nothing of nasframe. Inside a supernet, the layer holds the
largest weight and shares it by slicing, the convention of single-path channel search (SPOS) and of
OFA's elastic width and kernel without its kernel transformation: a path of width c uses the first c
channels (of the output, and of the input, whose width is the previous layer's), a kernel k the centred
k x k square of the largest kernel. `set_path` precomputes each layer's slices; `forward` only indexes
the weight with them and calls the functional op.

A mixed forward (DARTS, SETN) runs the largest layer once, with its weight multiplied by masks: the
input channels by the weight of every width that keeps them (the masked channels of the layer before
then contribute nothing, as FBNetV2's channel masks do), the kernel by the weight of every kernel size
covering each position. One convolution per layer and step, whatever the number of choices.
"""

from __future__ import annotations

import inspect
import itertools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasframe.common.distributed import ChannelSlicedBatchNorm
from nasframe.common.errors import NotSupported
from nasframe.core.space import Choice, Index
from nasframe.nn.context import Shared, current_frame
from nasframe.nn.mixing import centre, indicator, mix, prefix
from nasframe.nn.values import ModelSpaceError, Value, positive_ints, possible, same_everywhere, value_of


class MutableLayer:
    """What every mutable layer offers the supernet (`nasframe.nn.supernet.ModelSupernet`)."""

    #: the layer's name in the model (set by the supernet), for messages
    where: str = ""
    _shared: Shared
    _labels: tuple[str, ...]
    _cache: dict[tuple[Choice, ...], Any]
    #: why a mixed forward cannot run this layer (None: it can)
    not_mixable: str | None = None

    def _key(self, arch: Mapping[str, Choice]) -> tuple[Choice, ...]:
        return tuple(arch[label] for label in self._labels)

    def _config(self, arch: Mapping[str, Choice]) -> Any:
        key = self._key(arch)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._make_config(arch)
        return found

    def _make_config(self, arch: Mapping[str, Choice]) -> Any:
        raise NotImplementedError

    def activate(self, arch: Mapping[str, Choice]) -> None:
        """Precompute what the next single-path forwards use."""
        self._path = self._config(arch)

    def param_slices(self, arch: Mapping[str, Choice]) -> dict[str, Index | None]:
        """The part of each of the layer's parameters `arch` uses, by name relative to the layer."""
        raise NotImplementedError

    def buffer_slices(self, arch: Mapping[str, Choice]) -> dict[str, Index]:
        """The buffers `arch` uses only part of."""
        return {}

    def _wrong_width(self, expected: int, got: int, value: Any, what: str) -> ModelSpaceError:
        source = f" ({value!r})" if isinstance(value, Value) else ""
        return ModelSpaceError(
            f"{self.where or type(self).__name__}: this path gives it {got} {what} but it expects {expected}"
            f"{source}: a width must match its neighbour on every path (use one label for widths that meet)"
        )


def _bind(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The constructor's arguments by name, defaults included (a TypeError as torch would raise)."""
    bound = inspect.signature(cls.__init__).bind(None, *args, **kwargs)  # type: ignore[misc]
    bound.apply_defaults()
    out = dict(bound.arguments)
    out.pop("self")
    return out


def _new(cls: type, base: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """`base(...)` when no argument is a choice or when building one architecture, else a new `cls`."""
    if not args and not kwargs:  # copy.deepcopy and pickle create the object first
        return object.__new__(cls)
    bound = _bind(cls, args, kwargs)
    if not any(isinstance(v, Value) for v in bound.values()):
        return base(**bound)
    frame = current_frame(f"nasframe.nn.{cls.__name__}")
    if frame.mode == "frozen":
        assert frame.arch is not None
        return base(**{k: value_of(v, frame.arch) for k, v in bound.items()})
    return object.__new__(cls)


def _fixed(value: Any, what: str, where: str) -> Any:
    if isinstance(value, Value):
        raise ModelSpaceError(f"{where}: {what} cannot be a choice ({value!r})")
    return value


def _labels_of(*values: Any) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for v in values:
        if isinstance(v, Value):
            seen.update(dict.fromkeys(v.labels))
    return tuple(seen)


def _whole(index: Index, shape: torch.Size) -> Index | None:
    """None when `index` covers the whole tensor (the fast path of the step and of forward)."""
    for s, n in zip(index, shape):
        if s.start not in (None, 0) or s.stop not in (None, n) or s.step not in (None, 1):
            return index
    return None


@dataclass(frozen=True)
class _ConvPath:
    cin: int
    weight: Index | None
    bias: Index | None
    stride: Any
    padding: Any
    groups: int


class Conv2d(nn.Conv2d, MutableLayer):
    """`torch.nn.Conv2d` whose `in_channels`, `out_channels`, `kernel_size` (square), `stride` and `padding`
    may be choices. `groups` may be the same choice as `in_channels` and `out_channels` (a depthwise
    convolution); other grouped convolutions keep fixed widths. `padding=k // 2` with `k` the kernel choice
    keeps the spatial size on every path."""

    _in_rows: torch.Tensor
    _k_rows: torch.Tensor

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _new(cls, nn.Conv2d, args, kwargs)

    def __init__(
        self,
        in_channels: Any,
        out_channels: Any,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: Any = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ):
        where = "nasframe.nn.Conv2d"
        frame = current_frame(where)
        cins = positive_ints(in_channels, "in_channels", where)
        couts = positive_ints(out_channels, "out_channels", where)
        if isinstance(kernel_size, (tuple, list)):
            raise ModelSpaceError(f"{where}: a kernel size choice is square: give one number or choice, not a tuple")
        ks = positive_ints(kernel_size, "kernel_size", where)
        _fixed(dilation, "dilation", where)
        _fixed(bias, "bias", where)
        depthwise = _check_groups(groups, in_channels, out_channels, padding_mode, where)
        big = max(ks)
        if any((big - k) % 2 for k in ks):
            raise ModelSpaceError(
                f"{where}: kernel sizes {ks} share the centre of the largest, so they must all be odd or all even"
            )
        c_in, c_out = max(cins), max(couts)
        super().__init__(
            c_in,
            c_in if depthwise else c_out,
            big,
            stride=1 if isinstance(stride, Value) else stride,
            padding=0,
            dilation=dilation,
            groups=c_in if depthwise else groups,
            bias=bias,
            device=device,
            dtype=dtype,
        )
        self._shared = frame.shared
        self._cache = {}
        self._labels = _labels_of(in_channels, out_channels, kernel_size, stride, padding, groups)
        self._in, self._out, self._k, self._s, self._p = in_channels, out_channels, kernel_size, stride, padding
        self._dw = depthwise
        self._path = _ConvPath(c_in, None, None, 1 if isinstance(stride, Value) else stride, padding, self.groups)
        self._mixing_setup(big)

    def _mixing_setup(self, big: int) -> None:
        """Masks for the mixed forward, and the padding it uses (that of the largest kernel)."""
        self._mix_padding: Any = self._p
        problems = []
        if isinstance(self._s, Value):
            problems.append("its stride is a choice (paths give different output sizes)")
        if isinstance(self._k, Value):
            d = self.dilation[0]
            if isinstance(self._p, str) and self._p == "same":
                self._mix_padding = "same"
            elif isinstance(self._p, Value) and all(p == d * (k - 1) // 2 for p, k in _jointly(self._p, self._k)):
                self._mix_padding = d * (big - 1) // 2
            else:
                problems.append("its padding does not keep the size for every kernel (use padding=k // 2)")
            if isinstance(self._in, Value) and set(_labels_of(self._in)) & set(_labels_of(self._k)):
                problems.append("its width and its kernel size depend on the same label")
        elif isinstance(self._p, Value) and len(possible(self._p)) > 1:
            problems.append("its padding is a choice of a fixed kernel (paths give different output sizes)")
        self.not_mixable = "; ".join(problems) or None
        if isinstance(self._in, Value):
            rows, self._in_key = indicator(self._in, self.in_channels, prefix(self.in_channels))
            self.register_buffer("_in_rows", rows, persistent=False)
        if isinstance(self._k, Value):
            rows, self._k_key = indicator(self._k, big * big, centre(big))
            self.register_buffer("_k_rows", rows, persistent=False)

    def _make_config(self, arch: Mapping[str, Choice]) -> _ConvPath:
        cin, cout, k = value_of(self._in, arch), value_of(self._out, arch), value_of(self._k, arch)
        big = self.kernel_size[0]
        a = (big - k) // 2
        kernel = (slice(a, a + k), slice(a, a + k))
        if self._dw:
            weight: Index = (slice(0, cin), slice(None), *kernel)
            groups, cout = cin, cin
        else:
            weight = (slice(0, cout), slice(0, cin // self.groups), *kernel)
            groups = self.groups
        bias = None if self.bias is None else _whole((slice(0, cout),), self.bias.shape)
        return _ConvPath(
            cin, _whole(weight, self.weight.shape), bias, value_of(self._s, arch), value_of(self._p, arch), groups
        )

    def param_slices(self, arch: Mapping[str, Choice]) -> dict[str, Index | None]:
        cfg = self._config(arch)
        return {"weight": cfg.weight} if self.bias is None else {"weight": cfg.weight, "bias": cfg.bias}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._shared.mixed is not None:
            return self._forward_mixed(x)
        p = self._path
        if x.shape[1] != p.cin:
            raise self._wrong_width(p.cin, x.shape[1], self._in, "input channels")
        w = self.weight if p.weight is None else self.weight[p.weight]
        b = self.bias if self.bias is None or p.bias is None else self.bias[p.bias]
        return F.conv2d(x, w, b, p.stride, p.padding, self.dilation, p.groups)

    def _forward_mixed(self, x: torch.Tensor) -> torch.Tensor:
        if self.not_mixable:
            raise NotSupported(f"{self.where}: a mixed forward cannot run this convolution: {self.not_mixable}")
        w = self.weight
        if isinstance(self._in, Value):
            m = mix(self._shared, _labels_of(self._in), self._in_key, self._in_rows)
            w = w * (m.view(-1, 1, 1, 1) if self._dw else m.view(1, -1, 1, 1))
        if isinstance(self._k, Value):
            big = self.kernel_size[0]
            w = w * mix(self._shared, _labels_of(self._k), self._k_key, self._k_rows).view(1, 1, big, big)
        return F.conv2d(x, w, self.bias, self.stride, self._mix_padding, self.dilation, self.groups)


def _jointly(a: Value, b: Value) -> list[tuple[Any, Any]]:
    """(a, b) under every combination of the labels either depends on."""
    labels: dict[str, tuple[Choice, ...]] = {}
    for v in (a, b):
        for c in v.choices():
            labels.setdefault(c.label, c.values)
    archs = (dict(zip(labels, combo)) for combo in itertools.product(*labels.values()))
    return [(a.evaluate(arch), b.evaluate(arch)) for arch in archs]


@dataclass(frozen=True)
class _BatchNormPath:
    c: int
    index: Index | None


class BatchNorm2d(nn.BatchNorm2d, MutableLayer, ChannelSlicedBatchNorm):
    """`torch.nn.BatchNorm2d` whose `num_features` may be a choice (the width of the layer before it): a path
    normalises its first channels with their own statistics and affine parameters; the other channels'
    statistics are left as they were, in training and in BatchNorm recalibration."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _new(cls, nn.BatchNorm2d, args, kwargs)

    def __init__(
        self,
        num_features: Any,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
    ):
        where = "nasframe.nn.BatchNorm2d"
        frame = current_frame(where)
        fixed = {"eps": eps, "momentum": momentum, "affine": affine, "track_running_stats": track_running_stats}
        for name, v in fixed.items():
            _fixed(v, name, where)
        widths = positive_ints(num_features, "num_features", where)
        super().__init__(max(widths), eps, momentum, affine, track_running_stats, device=device, dtype=dtype)
        self._shared = frame.shared
        self._cache = {}
        self._labels = _labels_of(num_features)
        self._c = num_features
        self._path = _BatchNormPath(self.num_features, None)

    def _make_config(self, arch: Mapping[str, Choice]) -> _BatchNormPath:
        c = value_of(self._c, arch)
        return _BatchNormPath(c, None if c == self.num_features else (slice(0, c),))

    def param_slices(self, arch: Mapping[str, Choice]) -> dict[str, Index | None]:
        return dict.fromkeys(("weight", "bias"), self._config(arch).index) if self.affine else {}

    def buffer_slices(self, arch: Mapping[str, Choice]) -> dict[str, Index]:
        index = self._config(arch).index
        if index is None or not self.track_running_stats:
            return {}
        return {"running_mean": index, "running_var": index}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._shared.mixed is not None:
            return super().forward(x)
        p = self._path
        if x.shape[1] != p.c:
            raise self._wrong_width(p.c, x.shape[1], self._c, "channels")
        if p.index is None:
            return super().forward(x)
        # torch's _BatchNorm.forward, on the path's channels (the running statistics are views: updated in place)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        use_batch = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        c = p.c
        return F.batch_norm(
            x,
            self.running_mean[:c] if track and self.running_mean is not None else None,
            self.running_var[:c] if track and self.running_var is not None else None,
            self.weight[:c] if self.weight is not None else None,
            self.bias[:c] if self.bias is not None else None,
            use_batch,
            factor,
            self.eps,
        )


@dataclass(frozen=True)
class _LinearPath:
    fin: int
    weight: Index | None
    bias: Index | None


class Linear(nn.Linear, MutableLayer):
    """`torch.nn.Linear` whose `in_features` and `out_features` may be choices (first features shared)."""

    _in_rows: torch.Tensor

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        return _new(cls, nn.Linear, args, kwargs)

    def __init__(self, in_features: Any, out_features: Any, bias: bool = True, device: Any = None, dtype: Any = None):
        where = "nasframe.nn.Linear"
        frame = current_frame(where)
        _fixed(bias, "bias", where)
        fins = positive_ints(in_features, "in_features", where)
        fouts = positive_ints(out_features, "out_features", where)
        super().__init__(max(fins), max(fouts), bias, device=device, dtype=dtype)
        self._shared = frame.shared
        self._cache = {}
        self._labels = _labels_of(in_features, out_features)
        self._in, self._out = in_features, out_features
        self._path = _LinearPath(self.in_features, None, None)
        if isinstance(in_features, Value):
            rows, self._in_key = indicator(in_features, self.in_features, prefix(self.in_features))
            self.register_buffer("_in_rows", rows, persistent=False)

    def _make_config(self, arch: Mapping[str, Choice]) -> _LinearPath:
        fin, fout = value_of(self._in, arch), value_of(self._out, arch)
        bias = None if self.bias is None else _whole((slice(0, fout),), self.bias.shape)
        return _LinearPath(fin, _whole((slice(0, fout), slice(0, fin)), self.weight.shape), bias)

    def param_slices(self, arch: Mapping[str, Choice]) -> dict[str, Index | None]:
        cfg = self._config(arch)
        return {"weight": cfg.weight} if self.bias is None else {"weight": cfg.weight, "bias": cfg.bias}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._shared.mixed is not None:
            w = self.weight
            if isinstance(self._in, Value):
                w = w * mix(self._shared, _labels_of(self._in), self._in_key, self._in_rows).view(1, -1)
            return F.linear(x, w, self.bias)
        p = self._path
        if x.shape[-1] != p.fin:
            raise self._wrong_width(p.fin, x.shape[-1], self._in, "input features")
        w = self.weight if p.weight is None else self.weight[p.weight]
        b = self.bias if self.bias is None or p.bias is None else self.bias[p.bias]
        return F.linear(x, w, b)


def _check_groups(groups: Any, in_channels: Any, out_channels: Any, padding_mode: str, where: str) -> bool:
    """Whether the convolution is depthwise with a width choice; refuses groups (and padding) a mutable
    convolution cannot slice."""
    if padding_mode != "zeros":
        raise ModelSpaceError(f"{where}: a mutable convolution pads with zeros (padding_mode='zeros')")
    depthwise = isinstance(groups, Value)
    if depthwise and not (same_everywhere(groups, in_channels) and same_everywhere(out_channels, in_channels)):
        raise ModelSpaceError(
            f"{where}: groups={groups!r} is a choice: only a depthwise convolution (groups, in_channels and "
            f"out_channels the same choice) may choose its groups"
        )
    if not depthwise and groups != 1 and (isinstance(in_channels, Value) or isinstance(out_channels, Value)):
        if isinstance(in_channels, Value) and same_everywhere(out_channels, in_channels):
            raise ModelSpaceError(f"{where}: a depthwise convolution of a width choice needs groups=<that choice>")
        raise ModelSpaceError(
            f"{where}: a grouped convolution (groups={groups}) keeps fixed widths; only depthwise convolutions "
            f"(groups = in_channels = out_channels) may choose their width"
        )
    return depthwise
