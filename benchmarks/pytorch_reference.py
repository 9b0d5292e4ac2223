"""jaxvae against the PyTorch reference VAE (pytorch/examples, vae/main.py), side by side.

Both train the reference's model and defaults on Fashion-MNIST (784-400-20 ReLU, Bernoulli decoder on
grey values, batch 128, Adam 1e-3) for the same number of epochs, each timed over the same work
(training every epoch and the test loss after it; jaxvae's compilation included). The reference is
re-implemented here as it is written there: sigmoid-then-BCE summed over the batch, a DataLoader
with shuffling, one sample per example, test loss = mean over test examples of BCE + KL (= -ELBO).

    .venv/bin/pip install -e '.[reference]'
    .venv/bin/python benchmarks/pytorch_reference.py --epochs 10
"""

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def pytorch_reference(x_train: np.ndarray, x_test: np.ndarray, epochs: int, seed: int) -> tuple[float, float]:
    """Returns (test -ELBO in nats after the last epoch, wall seconds)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(seed)

    class VAE(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.fc21, self.fc22 = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
            self.fc3, self.fc4 = nn.Linear(20, 400), nn.Linear(400, 784)

        def forward(self, x):
            h = F.relu(self.fc1(x))
            mu, logvar = self.fc21(h), self.fc22(h)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            return torch.sigmoid(self.fc4(F.relu(self.fc3(z)))), mu, logvar

    def loss_function(recon, x, mu, logvar):
        bce = F.binary_cross_entropy(recon, x, reduction="sum")
        return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())

    train_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x_train)), batch_size=128, shuffle=True
    )
    test_loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x_test)), batch_size=128, shuffle=True
    )
    model = VAE()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    began = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for (x,) in train_loader:
            optimizer.zero_grad()
            recon, mu, logvar = model(x)
            loss = loss_function(recon, x, mu, logvar)
            loss.backward()
            optimizer.step()
        model.eval()
        test_loss = 0.0
        with torch.no_grad():
            for (x,) in test_loader:
                recon, mu, logvar = model(x)
                test_loss += loss_function(recon, x, mu, logvar).item()
    return test_loss / len(x_test), time.perf_counter() - began


def jaxvae_run(epochs: int, seed: int) -> tuple[float, float]:
    """Returns (test -ELBO in nats after the last epoch, wall seconds), via the library as a user calls it."""
    from jaxvae.config import ModelConfig, RunConfig, TrainConfig
    from jaxvae.data import load_dataset
    from jaxvae.train import fit, read_metrics

    config = RunConfig(
        ModelConfig(data_shape=(28, 28), latent_dim=20, hidden=(400,), activation="relu"),
        TrainConfig(dataset="fashion-mnist", epochs=epochs, batch_size=128, lr=1e-3, seed=seed),
    )
    data = load_dataset("fashion-mnist")
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        fit(config, data, Path(tmp) / "run", progress=False)
        seconds = time.perf_counter() - began
        return -read_metrics(Path(tmp) / "run")[-1]["test_elbo"], seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    from jaxvae.data import load_dataset

    data = load_dataset("fashion-mnist")
    ref_nelbo, ref_seconds = pytorch_reference(data.x_train, data.x_test, args.epochs, args.seed)
    jax_nelbo, jax_seconds = jaxvae_run(args.epochs, args.seed)
    print(f"Fashion-MNIST, 784-400-20 ReLU, Bernoulli on grey values, batch 128, Adam 1e-3, {args.epochs} epochs")
    print("| implementation | test -ELBO (nats) | wall time (s) |")
    print("| --- | --- | --- |")
    print(f"| PyTorch reference | {ref_nelbo:.2f} | {ref_seconds:.1f} |")
    print(f"| jaxvae | {jax_nelbo:.2f} | {jax_seconds:.1f} |")
    print(
        f"jaxvae - reference: {jax_nelbo - ref_nelbo:+.2f} nats; time ratio jaxvae / reference: "
        f"{jax_seconds / ref_seconds:.2f}"
    )


if __name__ == "__main__":
    main()
