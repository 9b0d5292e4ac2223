"""Speed of the quadrature of log p(x) for a 2-D model, with glibc's malloc as it comes and as jaxvae sets it.

The model is the seed's architecture (64-512-2 tanh encoder, 2-512-64 Bernoulli decoder on the digits),
untrained: the grids do not depend on the weights' values for their cost. Each setting runs in a process of its
own, the quadrature compiled first and then timed on the first --n test digits at the default grids (64 x 64
points) and at the check's (128 x 128), in wall-clock seconds, user and system CPU seconds and page faults:
"as it comes" is glibc's default, "reused" the process after `process.reuse_freed_memory`, as every jaxvae
command runs. The last line is the ratio of their wall times, measured in the same run.

    .venv/bin/python benchmarks/quadrature_speed.py
    .venv/bin/python benchmarks/quadrature_speed.py --n 128
"""

import json
import subprocess
import sys

from jaxvae.cli.parser import Parser

SETTINGS = {"as it comes": "default", "reused": "reuse"}
GRIDS = (64, 128)

MEASURE = """
import json, resource, sys, time
import jax, jax.numpy as jnp
from jaxvae import process
from jaxvae.builder import build_model
from jaxvae.config import ModelConfig
from jaxvae.data import load_dataset
from jaxvae.evaluate import log_likelihood_quadrature

if sys.argv[1] == "reuse":
    process.reuse_freed_memory()
n = int(sys.argv[2])
vae = build_model(ModelConfig(data_shape=(8, 8), latent_dim=2, hidden=(512,)), key=jax.random.PRNGKey(0))
x = jnp.asarray(load_dataset("digits", progress=False).x_test[:n] > 0.5, jnp.float32)
rows = {}
for points in map(int, sys.argv[3].split(",")):
    run = lambda: log_likelihood_quadrature(vae, x, points=points, coarse=points).block_until_ready()
    run()
    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    run()
    wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
    rows[points] = dict(wall=wall, user=after.ru_utime - before.ru_utime, system=after.ru_stime - before.ru_stime,
                        faults=after.ru_minflt - before.ru_minflt)
print(json.dumps(rows))
"""


def measure(mode: str, n: int) -> dict:
    """The timings of one setting, in a process of its own: {points: {wall, user, system, faults}}."""
    command = [sys.executable, "-c", MEASURE, mode, str(n), ",".join(map(str, GRIDS))]
    out = subprocess.run(command, capture_output=True, text=True, check=True)
    return {int(points): row for points, row in json.loads(out.stdout.splitlines()[-1]).items()}


def main() -> None:
    parser = Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="test digits to integrate (default 256)")
    args = parser.parse_args()
    results = {name: measure(mode, args.n) for name, mode in SETTINGS.items()}
    print(f"quadrature of log p(x), {args.n} digits, seed's architecture, k = 2 (seconds; page faults)")
    print(f"{'malloc':<12} {'grid':>9} {'wall':>7} {'user':>7} {'system':>7} {'faults':>10} {'digits/s':>9}")
    for name, rows in results.items():
        for points, row in rows.items():
            grid = f"{points}x{points}"
            print(
                f"{name:<12} {grid:>9} {row['wall']:7.2f} {row['user']:7.2f} {row['system']:7.2f} "
                f"{row['faults']:10,d} {args.n / row['wall']:9.1f}"
            )
    ratios = ", ".join(
        f"{points}x{points} {results['as it comes'][points]['wall'] / results['reused'][points]['wall']:.2f}"
        for points in GRIDS
    )
    print(f"wall time as it comes / reused: {ratios}")


if __name__ == "__main__":
    main()
