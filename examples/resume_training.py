"""Resumable training: a long node saves a checkpoint every epoch and survives being killed.

    make_data -> train (checkpointed, 30 epochs) -> evaluate

``train`` fits a logistic-regression model by mini-batch SGD with momentum. After every epoch
it saves a checkpoint: the weights, the optimizer's velocity, the random generator's state
(which shuffles the batches) and the number of the next epoch. Checkpoint ``N`` is saved once
epochs ``0 .. N-1`` are done, so it says "resume at epoch N".

Simulate a machine dying at epoch 7, then run again::

    EF_FAIL_AT_EPOCH=7 python examples/resume_training.py   # killed (SIGKILL) after checkpoint 7
    python examples/resume_training.py                      # "resuming at epoch 7", then done
    python examples/resume_training.py                      # nothing runs: everything is cached

On the second run ``train`` continues from its checkpoint, and the final weights are
bit-identical to those of an uninterrupted run: the digest printed at the end is the same.
(``make_data`` may run again, because a killed process loses its last, unflushed journal
batch; it yields the same bytes, so ``train`` gets the same cache key and finds its
checkpoint.) The checkpoint is deleted once ``train`` succeeds.
"""

from __future__ import annotations

import hashlib
import os
import signal
import warnings

import numpy as np

from etherealfabric import FingerprintWarning, Workflow, checkpoint, node

# EF_FAIL_AT_EPOCH only injects a fault: it must not change train's key (the resumed run has to
# find train's checkpoint under the same key), so its read is left out of the key on purpose
warnings.filterwarnings("ignore", message=r".*EF_FAIL_AT_EPOCH", category=FingerprintWarning)

EPOCHS = 30
LEARNING_RATE = 0.1
MOMENTUM = 0.9
BATCH_SIZE = 64


@node(outputs=["X_train", "y_train", "X_test", "y_test"])
def make_data(
    n_rows: int, n_features: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two noisy, overlapping classes, split 80/20 into train and test rows."""
    rng = np.random.default_rng(seed)
    true_w = rng.normal(size=n_features)
    X = rng.normal(size=(n_rows, n_features))
    p = 1.0 / (1.0 + np.exp(-(X @ true_w + 0.5 + rng.normal(scale=1.0, size=n_rows))))
    y = (rng.uniform(size=n_rows) < p).astype(np.float64)
    cut = int(n_rows * 0.8)
    return X[:cut], y[:cut], X[cut:], y[cut:]


def _loss_and_grad(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean log loss of logistic regression (last weight: the bias) and its gradient."""
    z = X @ w[:-1] + w[-1]
    p = 1.0 / (1.0 + np.exp(-z))
    eps = 1e-12
    loss = float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps)))
    error = (p - y) / len(y)
    return loss, np.append(X.T @ error, error.sum())


@node
def train(X: np.ndarray, y: np.ndarray, epochs: int, seed: int) -> np.ndarray:
    """Mini-batch SGD with momentum; resumes from its last checkpoint if it has one."""
    state = checkpoint.load(default=None)
    if state is None:
        rng = np.random.default_rng(seed)
        state = {
            "epoch": 0,
            "weights": np.zeros(X.shape[1] + 1),
            "velocity": np.zeros(X.shape[1] + 1),
            "rng": rng.bit_generator.state,
        }
    else:
        print(f"resuming at epoch {state['epoch']}", flush=True)
    w, velocity = state["weights"], state["velocity"]
    rng = np.random.default_rng()
    rng.bit_generator.state = state["rng"]
    fail_at = int(os.environ.get("EF_FAIL_AT_EPOCH") or 0)  # 0: never

    for epoch in range(state["epoch"], epochs):
        order = rng.permutation(len(X))
        for start in range(0, len(X), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            _, grad = _loss_and_grad(w, X[batch], y[batch])
            velocity = MOMENTUM * velocity - LEARNING_RATE * grad
            w = w + velocity
        loss, _ = _loss_and_grad(w, X, y)
        print(f"epoch {epoch + 1:2d}/{epochs}: loss {loss:.4f}", flush=True)
        checkpoint.save(
            {"epoch": epoch + 1, "weights": w, "velocity": velocity, "rng": rng.bit_generator.state}
        )
        if epoch + 1 == fail_at:  # fault injection: the machine dies right after checkpoint N
            print(f"EF_FAIL_AT_EPOCH={fail_at}: killing this process", flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    return w


@node
def evaluate(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Log loss and accuracy on held-out rows."""
    loss, _ = _loss_and_grad(w, X, y)
    accuracy = float(np.mean(((X @ w[:-1] + w[-1]) > 0) == (y == 1)))
    return {"loss": loss, "accuracy": accuracy}


with Workflow("resume_training") as workflow:
    X_train, y_train, X_test, y_test = make_data(n_rows=5_000, n_features=20, seed=3)
    model = train(X_train, y_train, epochs=EPOCHS, seed=11)
    metrics = evaluate(model, X_test, y_test)


if __name__ == "__main__":
    results = workflow.execute()
    m = results[metrics]
    print(f"test loss {m['loss']:.4f}, accuracy {m['accuracy']:.2%}")
    print(f"weights digest {hashlib.sha256(results[model].tobytes()).hexdigest()[:16]}")
    print(f"{results.executed} nodes executed, {results.cached} cached")
