"""`python -m gpuconv train`: the hand-written backward is autograd's, training is deterministic for a
seed, "numpy" and "cuda-emu" give the same losses, the command prints its progress and writes the PNG,
and the default run reaches 97 % test accuracy."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from PIL import Image  # Pillow comes with matplotlib (the train extra)

from gpuconv import _train
from gpuconv.__main__ import main


def test_backward_is_autograds_gradient():
    """The training step's gradients (gpuconv.grad for conv/pool, NumPy for the rest) against torch
    autograd of the same network in float64."""
    rng = np.random.default_rng(61)
    params = [p.astype(np.float64) for p in _train.init_params(rng, np)]
    params = [p + 0.1 * rng.standard_normal(p.shape) for p in params]  # non-zero biases
    x = rng.random((5, 1, 8, 8))
    labels = np.array([3, 1, 4, 1, 5])
    logits, cache = _train.forward(params, x, "numpy")
    loss, dlogits = _train.softmax_cross_entropy(logits, labels, np)
    grads = _train.backward(params, cache, dlogits, "numpy")

    w1, b1, w2, b2, w3, b3 = (torch.tensor(p, requires_grad=True) for p in params)
    a = F.max_pool2d(F.relu(F.conv2d(torch.tensor(x), w1, b1, padding=1)), 2)
    a = F.max_pool2d(F.relu(F.conv2d(a, w2, b2, padding=1)), 2)
    torch_logits = a.flatten(1) @ w3 + b3
    torch_loss = F.cross_entropy(torch_logits, torch.tensor(labels))
    torch_loss.backward()
    np.testing.assert_allclose(logits, torch_logits.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(loss, torch_loss.item(), rtol=1e-12)
    for name, mine, theirs in zip(("conv1 w", "conv1 b", "conv2 w", "conv2 b", "dense w", "dense b"), grads,
                                  (w1, b1, w2, b2, w3, b3)):
        np.testing.assert_allclose(mine, theirs.grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


def test_training_is_deterministic_for_a_seed():
    first = _train.train("numpy", epochs=1, seed=5, max_steps=6)
    again = _train.train("numpy", epochs=1, seed=5, max_steps=6)
    other = _train.train("numpy", epochs=1, seed=6, max_steps=6)
    assert len(first.step_losses) == 6
    assert first.step_losses == again.step_losses and first.test_accuracy == again.test_accuracy
    assert first.step_losses != other.step_losses
    assert first.step_losses[-1] < first.step_losses[0]


def _torch_float64_losses(seed, steps):
    """The first training losses of the same network, data, initial weights and batches, trained with
    torch autograd in float64."""
    x_train, _, y_train, _ = _train.load_data(seed)
    rng = np.random.default_rng(seed)
    params = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in _train.init_params(rng, np)]
    velocity = [torch.zeros_like(p) for p in params]
    order = rng.permutation(len(y_train))
    losses = []
    for step in range(steps):
        batch = order[step * _train.BATCH_SIZE:(step + 1) * _train.BATCH_SIZE]
        w1, b1, w2, b2, w3, b3 = params
        a = F.max_pool2d(F.relu(F.conv2d(torch.tensor(x_train[batch], dtype=torch.float64), w1, b1, padding=1)), 2)
        a = F.max_pool2d(F.relu(F.conv2d(a, w2, b2, padding=1)), 2)
        loss = F.cross_entropy(a.flatten(1) @ w3 + b3, torch.tensor(y_train[batch]))
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, v, g in zip(params, velocity, grads):
                v.mul_(_train.MOMENTUM).add_(g)
                p.sub_(_train.LEARNING_RATE * v)
        losses.append(loss.item())
    return losses


def test_every_backend_trains_to_autograds_losses(grad_backend):
    """A few steps on each backend ("numpy", "cuda-emu", "cuda") give the losses of torch autograd in
    float64 within float32 rounding, so the backends agree with one another too."""
    got = _train.train(grad_backend, epochs=1, seed=2, max_steps=5, evaluate=False)
    np.testing.assert_allclose(got.step_losses, _torch_float64_losses(seed=2, steps=5), rtol=2e-5)


def test_command_prints_progress_and_the_test_accuracy_last(tmp_path, capsys):
    out = tmp_path / "train.png"
    assert main(["train", "--epochs", "2", "--seed", "1", "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len([line for line in lines if re.match(r"epoch +\d+/2 +loss ", line)]) == 2
    assert re.fullmatch(r"test accuracy: [01]\.\d{3}", lines[-1])
    assert float(lines[-1].split()[-1]) > 0.8
    image = Image.open(out)
    assert image.format == "PNG" and image.size[0] > 400


def test_command_rejects_zero_epochs(tmp_path):
    with pytest.raises(SystemExit, match="--epochs=0"):
        main(["train", "--epochs", "0", "--out", str(tmp_path / "x.png")])


@pytest.mark.slow
def test_default_run_reaches_97_percent(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "train.png")]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert float(last.removeprefix("test accuracy: ")) >= 0.97, last
