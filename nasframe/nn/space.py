"""`ModelSpace`: a PyTorch module with mutables, as a registered `SearchSpace`.

`nasframe.model_space("my_net", MyNet)` registers a space whose decisions are the labels `MyNet.__init__`
creates (in the order it first uses them), whose `build(arch, data)` constructs `MyNet` once more with every
mutable resolved to the plain layer the architecture chooses, and whose `build_supernet(data)` constructs it
with every choice held (`ModelSupernet`). The factory is called with the run's `DataSpec` (and the space's
options, when the space declares an options dataclass).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from nasframe.common.options import NoOptions
from nasframe.core.registry import register_space
from nasframe.core.space import Arch, Choice, Decision, SearchSpace
from nasframe.data import DataSpec
from nasframe.nn.context import Frame, building
from nasframe.nn.layers import MutableLayer
from nasframe.nn.supernet import ModelSupernet
from nasframe.nn.values import ModelSpaceError

#: the data spec decisions are read with (a model space's decisions must not depend on the data set)
_DISCOVERY = DataSpec("model-space", 3, 32, 32, 10)
#: decisions moved one at a time in the check of a new supernet's paths (one forward of one image each)
_CHECKED_DECISIONS = 64


class ModelSpace(SearchSpace[Any]):
    """A search space defined by a PyTorch module whose `__init__` uses `nasframe.nn` mutables.

    Subclasses (made by `model_space`) set `factory`: a module class or a function taking the data spec
    (and the options, when `takes_options`). Decisions come from the labels, in first-use order; the
    stand-alone network is the module built for one architecture (plain torch layers only); the supernet
    shares weights by slicing and runs every strategy (single path, angle terms, mixed forward).
    """

    factory: ClassVar[Callable[..., nn.Module]]
    takes_options: ClassVar[bool] = False
    supports_supernet = True
    supernet_extras = frozenset({"angle_terms", "forward_mixed"})

    def __init__(self, options: Any = None):
        super().__init__(options)
        frame = Frame("supernet")
        net = self._construct(frame, _DISCOVERY, meta=True)
        if not frame.labels:
            raise ModelSpaceError(
                f"model space {self.name!r}: {self._factory_name()} creates no choice; use nasframe.nn.choice, "
                f"LayerChoice, InputChoice or Repeat in its __init__"
            )
        self._found: dict[str, tuple[Choice, ...]] = dict(frame.labels)
        #: why a mixed forward (DARTS, SETN) cannot run this space's supernet (None: it can)
        self.not_mixable: str | None = None
        for name, m in net.named_modules():
            if isinstance(m, MutableLayer) and m.not_mixable:
                self.not_mixable = f"{name}: {m.not_mixable}"
                self.supernet_extras = frozenset({"angle_terms"})
                break

    def supernet_extra_hint(self, extra: str) -> str:
        if extra == "forward_mixed" and self.not_mixable:
            return f"its supernet cannot mix {self.not_mixable}"
        return super().supernet_extra_hint(extra)

    def _factory_name(self) -> str:
        return getattr(self.factory, "__qualname__", repr(self.factory))

    def _construct(self, frame: Frame, data: DataSpec, *, meta: bool = False) -> nn.Module:
        """Call the factory inside `frame` (on the meta device when `meta`: shapes only, no memory; on the
        current device when the factory does something the meta device cannot)."""
        factory = type(self).factory
        args: tuple[Any, ...] = (data, self.options) if self.takes_options else (data,)
        try:
            with building(frame), torch.device("meta") if meta else contextlib.nullcontext():
                net = factory(*args)
        except (RuntimeError, NotImplementedError) as exc:
            if not meta:
                raise
            frame.labels.clear()
            with building(frame):
                net = factory(*args)
            del exc
        if not isinstance(net, nn.Module):
            raise ModelSpaceError(
                f"model space {self.name!r}: {self._factory_name()} returned a {type(net).__name__}, not an nn.Module"
            )
        return net

    # ---- decisions ---------------------------------------------------------------------------------------
    def define_decisions(self) -> list[Decision]:
        return [Decision(label, values) for label, values in self._found.items()]

    def decision_groups(self) -> list[list[str]]:
        """Labels grouped by family, the text before their last "." ("block2.kernel" and "block2.width" form
        one group, "depth" its own): a mutating strategy picks a family uniformly, then one of its labels, so
        every block mutates equally often whatever the number of its choices."""
        families: dict[str, list[str]] = {}
        for d in self.decisions:
            families.setdefault(d.name.rsplit(".", 1)[0], []).append(d.name)
        return list(families.values())

    # ---- networks ----------------------------------------------------------------------------------------
    def build(self, arch: Arch, data: DataSpec) -> nn.Module:
        """The module of `arch`: the factory's module with every mutable replaced by the plain layer chosen."""
        arch = Arch(self.check_buildable(arch))
        return self._construct(Frame("frozen", arch=arch, expected=self._found), data)

    def build_supernet(self, data: DataSpec) -> ModelSupernet:
        """The factory's module with every choice held, as a `ModelSupernet` (after a check that some paths and
        the mixed forward run and give logits of the right shape: `_check_paths`)."""
        frame = Frame("supernet", expected=self._found)
        net = self._construct(frame, data)
        missing = [label for label in self._found if label not in frame.labels]
        if missing:
            raise ModelSpaceError(
                f"model space {self.name!r}: decision {missing[0]!r} was not created for this data set: the "
                f"decisions of a model space must not depend on the data set"
            )
        supernet = ModelSupernet(net, frame.shared, self.define_decisions(), lambda arch: self.build(arch, data))
        self._check_paths(supernet, data)
        return supernet

    def _check_paths(self, supernet: ModelSupernet, data: DataSpec) -> None:
        """Run one image through some paths (every decision at its first choice, at its last, and each decision
        in turn at its last with the others at their first) and through the mixed forward, in eval mode without
        gradients (no statistics change, no random number is drawn), so widths that do not fit are reported,
        naming the layer, when the supernet is built rather than at a first training step."""
        decisions = self.define_decisions()
        first = Arch([(d.name, d.choices[0]) for d in decisions])
        paths = [first, Arch([(d.name, d.choices[-1]) for d in decisions])]
        paths += [first.replace(**{d.name: d.choices[-1]}) for d in decisions[:_CHECKED_DECISIONS]]
        device = next(supernet.parameters(), torch.zeros(0)).device
        x = torch.zeros(1, *data.input_shape, device=device)

        def path(arch: Arch) -> Callable[[], Any]:
            def run() -> Any:
                supernet.set_path(arch)
                return supernet(x)

            return run

        runs = [(f"the path {dict(arch)}", path(arch)) for arch in dict.fromkeys(paths)]
        if "forward_mixed" in self.supernet_extras:
            uniform = {d.name: torch.full((len(d.choices),), 1.0 / len(d.choices), device=device) for d in decisions}
            runs.append(("the mixed forward", lambda: supernet.forward_mixed(x, uniform)))
        was_training = supernet.training
        supernet.eval()
        try:
            for what, run in runs:
                try:
                    with torch.no_grad():
                        out = run()
                except ModelSpaceError as exc:
                    raise ModelSpaceError(f"model space {self.name!r}: {what} fails: {exc}") from None
                except RuntimeError as exc:  # torch's own shape errors, from plain layers
                    text = str(exc).strip()
                    first_line = text.splitlines()[0] if text else type(exc).__name__
                    raise ModelSpaceError(f"model space {self.name!r}: {what} fails: {first_line}") from None
                logits = out[0] if isinstance(out, (tuple, list)) else out
                if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (1, data.num_classes):
                    shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
                    raise ModelSpaceError(
                        f"model space {self.name!r}: {what} returns {shape} for one image, expected logits of shape "
                        f"(1, {data.num_classes})"
                    )
        finally:
            supernet.train(was_training)
            supernet.forget_path()


def model_space(
    name: str,
    factory: Callable[..., nn.Module] | None = None,
    *,
    options: type | None = None,
    additive_costs: bool = False,
    reference_data: str = "digits",
) -> Any:
    """Register the module class (or factory) `factory` as the search space `name` and return the space class.

    `factory(data)` builds the model for the run's `DataSpec` (`factory(data, options)` when an `options`
    dataclass of `nasframe.option` fields is given: `--set space.<field>=...`). `additive_costs=True`
    declares that each decision adds a fixed number of parameters and MACs whatever the others chose (checked
    on random architectures when the table is built), so constraints and FLOPs-binned sampling answer from a
    table. Without `factory`, a decorator: `@nasframe.model_space("my_net")` above the class registers it
    and leaves it as it is.
    """
    if factory is None:

        def register(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
            model_space(name, f, options=options, additive_costs=additive_costs, reference_data=reference_data)
            return f

        return register
    if not callable(factory):
        raise ModelSpaceError(f"model_space({name!r}, ...): expected a module class or a factory, got {factory!r}")
    what = getattr(factory, "__qualname__", repr(factory))
    doc = (getattr(factory, "__doc__", None) or "").strip()
    class_name = "ModelSpace_" + re.sub(r"\W", "_", name)
    cls = type(
        class_name,
        (ModelSpace,),
        {
            "__doc__": doc.splitlines()[0] if doc else f"Model space of {what} (nasframe.nn mutables).",
            "__module__": getattr(factory, "__module__", __name__),
            "__qualname__": class_name,
            "factory": staticmethod(factory),
            "takes_options": options is not None,
            "Options": options or NoOptions,
            "additive_costs": additive_costs,
            "reference_data": reference_data,
        },
    )
    register_space(name)(cls)
    return cls
