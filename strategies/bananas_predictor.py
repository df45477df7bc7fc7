"""BANANAS' predictor: an ensemble of small fully connected networks, trained together in NumPy.

Each member is BANANAS' "meta neural network": `layers` dense ReLU layers of `width` units and a linear
output, Glorot-uniform weights and zero biases (Keras' defaults, which the released code uses), trained
with Adam (betas 0.9 and 0.99) on the mean absolute error. The members differ in their random
initialisation and in the order of their mini-batches (each shuffles on its own, as separately trained
Keras models do), and are trained side by side as one batched network: every weight has a leading
ensemble axis, so one matrix product serves all members.

Why NumPy and not torch: the networks are tiny (20 units) and the batches small (32 rows), so a
training step is dominated by per-operation overhead, not arithmetic. Hand-written forward and
backward passes over a handful of NumPy arrays, with one flat parameter buffer that Adam updates in a
few vectorised operations, run several times faster than torch's autograd here
(benchmarks/bananas_predictor.py measures both side by side); tests/test_bananas.py checks the
gradients against torch's autograd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PredictorSettings:
    """Architecture and training of the ensemble (BANANAS' released code: 5 members, 10 layers of 20,
    Adam lr 0.01, batch 32, 150 epochs, mean absolute error)."""

    members: int = 5
    layers: int = 10
    width: int = 20
    lr: float = 0.01
    epochs: int = 150
    batch_size: int | None = 32  # None: the whole training set as one batch
    betas: tuple[float, float] = (0.9, 0.99)
    eps: float = 1e-7  # Keras' Adam epsilon


class EnsembleMLP:
    """`members` MLPs of the same shape stored as one set of batched arrays (leading axis: member)."""

    def __init__(self, inputs: int, settings: PredictorSettings, rng: np.random.Generator):
        self.settings = s = settings
        dims = [inputs] + [s.width] * s.layers + [1]
        self.dims = dims
        shapes = [(s.members, a, b) for a, b in zip(dims[:-1], dims[1:])] + [(s.members, 1, b) for b in dims[1:]]
        sizes = [int(np.prod(shape)) for shape in shapes]
        self.params = np.zeros(sum(sizes))
        self.grads = np.zeros_like(self.params)
        self._m = np.zeros_like(self.params)
        self._v = np.zeros_like(self.params)
        self._t = 0
        views, grad_views, offset = [], [], 0
        for shape, size in zip(shapes, sizes):
            views.append(self.params[offset : offset + size].reshape(shape))
            grad_views.append(self.grads[offset : offset + size].reshape(shape))
            offset += size
        n = s.layers + 1
        self.weights, self.biases = views[:n], views[n:]
        self._gw, self._gb = grad_views[:n], grad_views[n:]
        for w, (a, b) in zip(self.weights, zip(dims[:-1], dims[1:])):
            limit = np.sqrt(6.0 / (a + b))
            w[...] = rng.uniform(-limit, limit, size=w.shape)

    # ---- forward and backward ------------------------------------------------------------------------
    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        """Activations of every layer for inputs `x` (rows x features), each (members, rows, units);
        the last is the prediction (members, rows, 1)."""
        acts = []
        h: np.ndarray = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            z = h @ w
            z += b
            if i < last:
                np.maximum(z, 0.0, out=z)
            acts.append(z)
            h = z
        return acts

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Each member's prediction for every row of `x`: (members, rows)."""
        return self.forward(x)[-1][..., 0]

    def loss_and_gradients(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Each member's mean absolute error on its own batch, with the gradients written into `self.grads`.

        `x` is (members, rows, features) and `y` (members, rows): member i trains on x[i], y[i].
        """
        acts = self.forward(x)
        err = acts[-1][..., 0] - y
        g = (np.sign(err) / y.shape[1])[..., None]  # d(mean |err|) / d(prediction)
        for i in range(len(self.weights) - 1, -1, -1):
            below = acts[i - 1] if i else x
            np.matmul(below.transpose(0, 2, 1), g, out=self._gw[i])
            self._gb[i][...] = g.sum(axis=1, keepdims=True)
            if i:
                g = (g @ self.weights[i].transpose(0, 2, 1)) * (below > 0)
        return np.abs(err).mean(axis=1)

    def adam_step(self) -> None:
        """One Adam step on every parameter of every member (one flat buffer, a few array operations)."""
        s = self.settings
        b1, b2 = s.betas
        self._t += 1
        self._m *= b1
        self._m += (1 - b1) * self.grads
        self._v *= b2
        self._v += (1 - b2) * self.grads * self.grads
        step = s.lr * np.sqrt(1 - b2**self._t) / (1 - b1**self._t)  # Keras folds the bias corrections into lr
        self.params -= step * self._m / (np.sqrt(self._v) + s.eps)

    # ---- training --------------------------------------------------------------------------------------
    def fit(self, x: np.ndarray, y: np.ndarray, rng: np.random.Generator, epochs: int | None = None) -> float:
        """Train every member for `epochs` (default: the settings') epochs of shuffled mini-batches; the mean
        training error after."""
        s = self.settings
        n = len(y)
        for _ in range(s.epochs if epochs is None else epochs):
            order = rng.permuted(np.broadcast_to(np.arange(n), (s.members, n)), axis=1)
            size = n if s.batch_size is None else s.batch_size
            for start in range(0, n, size):
                rows = order[:, start : start + size]
                self.loss_and_gradients(x[rows], y[rows])
                self.adam_step()
        return float(np.abs(self.predict(x) - y).mean())

    # ---- checkpoints -----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Parameters and Adam's moments as tensors (checkpoints hold plain data and tensors only)."""
        import torch  # here, not at the top: `nasframe list` loads this module without torch

        return {
            "params": torch.from_numpy(self.params.copy()),
            "m": torch.from_numpy(self._m.copy()),
            "v": torch.from_numpy(self._v.copy()),
            "t": self._t,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.params[...] = state["params"].numpy()
        self._m[...] = state["m"].numpy()
        self._v[...] = state["v"].numpy()
        self._t = int(state["t"])
