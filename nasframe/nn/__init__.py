"""Search spaces written inside a PyTorch module: mark the choices in `__init__`, get the rest derived.

    import nasframe
    from nasframe import nn as nas
    from torch import nn

    class MyNet(nn.Module):
        def __init__(self, data):
            super().__init__()
            width = nas.choice("width", [16, 32])
            k = nas.choice("kernel", [3, 5])
            self.stem = nas.Conv2d(data.channels, width, k, padding=k // 2)
            self.bn = nas.BatchNorm2d(width)
            self.act = nas.LayerChoice({"relu": nn.ReLU(), "gelu": nn.GELU()}, label="act")
            self.head = nas.Linear(width, data.num_classes)

        def forward(self, x):
            return self.head(self.act(self.bn(self.stem(x))).mean((2, 3)))

    nasframe.model_space("my_net", MyNet)   # then: nasframe run --plugin my_net.py --space my_net ...

The mutables: `choice(label, values)` (a value for any constructor argument, arithmetic allowed),
`LayerChoice`, `InputChoice`, `Repeat`, and the layers `Conv2d`, `BatchNorm2d`, `Linear` whose sizes may be
choices. One label is one decision, wherever it is used. `ModelSpace` (made by `model_space`) derives the
decisions, builds the network of an architecture as a plain module (torch layers only) and the weight-sharing
supernet (`ModelSupernet`) on which every built-in strategy runs.
"""

from nasframe.nn.choices import ChosenInputs, InputChoice, LayerChoice, Repeat
from nasframe.nn.context import choice
from nasframe.nn.layers import BatchNorm2d, Conv2d, Linear, MutableLayer
from nasframe.nn.pruning import Zero
from nasframe.nn.space import ModelSpace, model_space
from nasframe.nn.supernet import ModelSupernet
from nasframe.nn.values import Categorical, Expr, ModelSpaceError, Value

#: every mutable class (what a frozen network never contains)
MUTABLES = (LayerChoice, InputChoice, Repeat, MutableLayer)

__all__ = [
    "MUTABLES",
    "BatchNorm2d",
    "Categorical",
    "ChosenInputs",
    "Conv2d",
    "Expr",
    "InputChoice",
    "LayerChoice",
    "Linear",
    "ModelSpace",
    "ModelSpaceError",
    "ModelSupernet",
    "MutableLayer",
    "Repeat",
    "Value",
    "Zero",
    "choice",
    "model_space",
]
