"""`python -m gpuconv train`: a small CNN trained on scikit-learn's 8x8 handwritten digits, written with
gpuconv's ops and NumPy (CuPy on "cuda") only. Forward: conv 3x3 -> ReLU -> max pool 2 -> conv 3x3 ->
ReLU -> max pool 2 -> dense -> softmax cross-entropy; every conv and pooling gradient from gpuconv.grad;
SGD with momentum. Deterministic for a seed on every backend."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import grad
from ._api import conv2d, max_pool2d

# (out channels, in channels) of the two 3x3 "same" convolutions; each is followed by a 2x2 max pool.
CONV_CHANNELS = ((16, 1), (32, 16))
CLASSES = 10
FEATURES = 32 * 2 * 2  # 8x8 -> pool -> 4x4 -> pool -> 2x2, 32 channels
BATCH_SIZE = 32
LEARNING_RATE = 0.05
MOMENTUM = 0.9
TEST_FRACTION = 0.2


def add_arguments(parser):
    parser.add_argument("--backend", default="numpy", choices=("numpy", "cuda", "cuda-emu"),
                        help="gpuconv backend of every conv/pool op and its gradient (default: numpy)")
    parser.add_argument("--epochs", type=int, default=12, help="passes over the training images (default: 12)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, initial weights and batch order")
    parser.add_argument("--out", type=Path, default=Path("out/train.png"), help="where to write the loss/accuracy PNG")


@dataclass
class History:
    """Per-step training losses, and per epoch: mean training loss, training accuracy (of the batches as
    they were trained on), test accuracy, seconds."""
    step_losses: list = field(default_factory=list)
    epoch_losses: list = field(default_factory=list)
    train_accuracy: list = field(default_factory=list)
    test_accuracy: list = field(default_factory=list)
    seconds: list = field(default_factory=list)


def load_data(seed: int):
    """Stratified train/test split of the 1,797 digits: images (N, 1, 8, 8) float32 in [0, 1], labels int64."""
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:
        raise SystemExit("the digits come from scikit-learn: pip install 'gpuconv[train]' (or scikit-learn)") from None
    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]
    return train_test_split(images, digits.target.astype(np.int64), test_size=TEST_FRACTION,
                            stratify=digits.target, random_state=seed)


def init_params(rng: np.random.Generator, xp):
    """He-normal weights, zero biases: [conv1 w, conv1 b, conv2 w, conv2 b, dense w, dense b]."""
    params = []
    for f, c in CONV_CHANNELS:
        params += [rng.standard_normal((f, c, 3, 3)) * np.sqrt(2.0 / (c * 9)), np.zeros(f)]
    params += [rng.standard_normal((FEATURES, CLASSES)) * np.sqrt(2.0 / FEATURES), np.zeros(CLASSES)]
    return [xp.asarray(p, dtype=np.float32) for p in params]


def forward(params, x, backend):
    """Logits (N, 10) and what backward needs."""
    cache = []
    a = x
    for w, b in (params[0:2], params[2:4]):
        z = conv2d(a, w, b, padding=1, backend=backend)
        r = z * (z > 0)
        pooled, indices = max_pool2d(r, 2, return_indices=True, backend=backend)
        cache.append((a, z, r, indices))
        a = pooled
    features = a.reshape(len(a), FEATURES)
    cache.append((features, a.shape))
    return features @ params[4] + params[5], cache


def softmax_cross_entropy(logits, labels, xp):
    """Mean loss over the batch and its gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - xp.log(xp.exp(shifted).sum(axis=1, keepdims=True))
    rows = xp.arange(len(labels))
    loss = -log_probs[rows, labels].mean()
    dlogits = xp.exp(log_probs)
    dlogits[rows, labels] -= 1
    return loss, dlogits / len(labels)


def backward(params, cache, dlogits, backend):
    """Gradients of every parameter, in params' order; conv and pooling gradients from gpuconv.grad."""
    features, pooled_shape = cache[2]
    grads = [None] * 4 + [features.T @ dlogits, dlogits.sum(axis=0)]
    upstream = (dlogits @ params[4].T).reshape(pooled_shape)
    for layer in (1, 0):
        a, z, r, indices = cache[layer]
        w = params[2 * layer]
        dr = grad.max_pool2d_input(upstream, r, 2, indices=indices, backend=backend)
        dz = dr * (z > 0)
        grads[2 * layer] = grad.conv2d_weight(a, w.shape, dz, padding=1, backend=backend)
        grads[2 * layer + 1] = grad.conv2d_bias(dz)
        if layer:
            upstream = grad.conv2d_input(a.shape, w, dz, padding=1, backend=backend)
    return grads


def accuracy(params, images, labels, backend) -> float:
    logits, _ = forward(params, images, backend)
    return float((logits.argmax(axis=1) == labels).mean())


def train(backend="numpy", epochs=12, seed=0, max_steps=None, evaluate=True, log=None) -> History:
    """Train from scratch; `max_steps` stops early and `evaluate=False` skips the accuracy passes (tests);
    `log(line)` gets one progress line per epoch."""
    xp = _array_module(backend)
    x_train, x_test, y_train, y_test = (xp.asarray(a) for a in load_data(seed))
    rng = np.random.default_rng(seed)
    params = init_params(rng, xp)
    velocity = [xp.zeros_like(p) for p in params]
    history = History()
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        order = rng.permutation(len(y_train))
        losses, correct, seen = [], 0, 0
        for first in range(0, len(order), BATCH_SIZE):
            batch = xp.asarray(order[first:first + BATCH_SIZE])
            logits, cache = forward(params, x_train[batch], backend)
            loss, dlogits = softmax_cross_entropy(logits, y_train[batch], xp)
            correct += int((logits.argmax(axis=1) == y_train[batch]).sum())
            seen += len(batch)
            for p, v, g in zip(params, velocity, backward(params, cache, dlogits, backend)):
                v *= MOMENTUM
                v += g
                p -= LEARNING_RATE * v
            losses.append(float(loss))
            if max_steps is not None and len(history.step_losses) + len(losses) >= max_steps:
                break
        history.step_losses += losses
        history.epoch_losses.append(float(np.mean(losses)))
        history.train_accuracy.append(correct / seen)
        if evaluate:
            history.test_accuracy.append(accuracy(params, x_test, y_test, backend))
        history.seconds.append(time.perf_counter() - start)
        if log and evaluate:
            log(f"epoch {epoch:3d}/{epochs}  loss {history.epoch_losses[-1]:.4f}  "
                f"train accuracy {history.train_accuracy[-1]:.3f}  test accuracy {history.test_accuracy[-1]:.3f}  "
                f"{history.seconds[-1]:.2f} s")
        if max_steps is not None and len(history.step_losses) >= max_steps:
            break
    return history


def _array_module(backend):
    if backend == "cuda":
        import cupy

        return cupy
    return np


def plot(history: History, path: Path, title: str) -> None:
    """Training loss and train/test accuracy per epoch, side by side."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("the plot needs matplotlib: pip install 'gpuconv[train]' (or matplotlib)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = range(1, len(history.epoch_losses) + 1)
    figure, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(10, 4))
    loss_ax.plot(epochs, history.epoch_losses, marker="o")
    loss_ax.set(xlabel="epoch", ylabel="mean training loss", yscale="log", title="softmax cross-entropy")
    acc_ax.plot(epochs, history.train_accuracy, marker="o", label="train (batches while training)")
    acc_ax.plot(epochs, history.test_accuracy, marker="o", label="test")
    acc_ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    acc_ax.legend()
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def run(args) -> int:
    if args.epochs < 1:
        raise SystemExit(f"--epochs={args.epochs}: must be at least 1")
    print(f"8x8 digits, {1 - TEST_FRACTION:.0%} train / {TEST_FRACTION:.0%} test (seed {args.seed}); "
          f"CNN conv{CONV_CHANNELS[0][0]}-pool-conv{CONV_CHANNELS[1][0]}-pool-dense{CLASSES}, SGD lr {LEARNING_RATE} "
          f"momentum {MOMENTUM}, batch {BATCH_SIZE}, backend {args.backend}")
    start = time.perf_counter()
    history = train(args.backend, args.epochs, args.seed, log=print)
    total = time.perf_counter() - start
    plot(history, Path(args.out), f"gpuconv train, backend {args.backend}, seed {args.seed}: "
                                  f"test accuracy {history.test_accuracy[-1]:.3f}")
    print(f"trained in {total:.1f} s; wrote {Path(args.out).resolve()}")
    print(f"test accuracy: {history.test_accuracy[-1]:.3f}")
    return 0
