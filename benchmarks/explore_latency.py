"""How long `jaxvae explore` takes to redraw the decoded image when the pointer moves, for the seed's model.

The seed's model (784-512-2 tanh MLP encoder and decoder, Bernoulli decoder) is built untrained (its
weights do not change the time) in a run folder over 10,000 random 28x28 images, so the page shows
2,000 test points. Headless Chromium then sends pointer moves to the scatter and waits for each
image to be drawn, with the decoder in the page and, for comparison, on the server (`/decode`).
Reported: milliseconds per update and their ratio to the issue's 50 ms budget, and the page
decoder's arithmetic rate as a ratio to this machine's float32 matmul rate (NumPy, measured here).

    .venv/bin/python benchmarks/explore_latency.py
"""

import argparse
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
BUDGET_MS = 50.0

MEASURE = """async (n) => {
  const canvas = document.getElementById('scatter');
  const box = canvas.getBoundingClientRect();
  const started = performance.now();
  for (let i = 0; i < n; i++) {
    const t = i / n;
    canvas.dispatchEvent(new PointerEvent('pointermove', {
      clientX: box.left + 60 + 400 * t, clientY: box.top + 60 + 400 * ((t * 7) % 1), bubbles: true }));
    await jaxvaeExplore.idle();
  }
  const updates = (performance.now() - started) / n;
  const z = [0.3, -0.7];
  const decoder = jaxvaeExplore.model.decoder
    ? jaxvaeExplore.browserDecoder(jaxvaeExplore.model.decoder, jaxvaeExplore.model.likelihood) : null;
  let decodes = null;
  if (decoder) {
    const t0 = performance.now();
    for (let i = 0; i < n; i++) decoder(z);
    decodes = (performance.now() - t0) / n;
  }
  return [updates, decodes];
}"""


def seed_run(folder: Path) -> Path:
    from jaxvae import checkpoint
    from jaxvae.config import ModelConfig, RunConfig, TrainConfig
    from jaxvae.runs import CHECKPOINTS, CONFIG
    from jaxvae.train import init_state

    data = folder / "images.npz"
    np.savez(data, x=np.random.default_rng(0).integers(0, 256, (10_000, 28, 28), dtype=np.uint8))
    config = RunConfig(ModelConfig(data_shape=(28, 28)), TrainConfig(dataset=str(data)))
    run = folder / "run"
    run.mkdir()
    config.save(run / CONFIG)
    checkpoint.save(run / CHECKPOINTS / "epoch-00001.eqx", init_state(config))
    return run


def matmul_gflops(n: int = 1024, repeats: int = 20) -> float:
    a, b = (np.random.default_rng(1).standard_normal((n, n), dtype=np.float32) for _ in range(2))
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - started) / 1e9


def measure(browser, run: Path, in_page: bool, n: int) -> tuple[float, float | None]:
    from jaxvae import explore

    original = explore.browser_decoder
    if not in_page:
        explore.browser_decoder = lambda vae: None
    try:
        server = explore.make_server(run)
    finally:
        explore.browser_decoder = original
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 720})
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']", timeout=120_000)
        page.evaluate(MEASURE, 20)  # warm up
        return tuple(page.evaluate(MEASURE, n))
    finally:
        server.shutdown()
        server.server_close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--updates", type=int, default=300)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        run = seed_run(Path(tmp))
        browser = playwright.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
        in_page, decode_ms = measure(browser, run, True, args.updates)
        on_server, _ = measure(browser, run, False, args.updates)
        browser.close()
    flops = 2 * (2 * 512 + 512 * 784)  # the decoder's multiply-adds, counted twice
    page_gflops = flops / (decode_ms * 1e-3) / 1e9
    peak = matmul_gflops()
    print(f"seed's model (784-512-2 tanh, Bernoulli), {args.updates} pointer moves over 2,000 points")
    print(f"decoder in the page:  {in_page:7.2f} ms per update = {in_page / BUDGET_MS:.3f} x the 50 ms budget")
    print(f"decoder on server:    {on_server:7.2f} ms per update = {on_server / BUDGET_MS:.3f} x the 50 ms budget")
    print(f"page decoder alone:   {decode_ms:7.3f} ms per z = {page_gflops:.2f} GFLOP/s, "
          f"{page_gflops / peak:.3f} x NumPy's float32 matmul ({peak:.1f} GFLOP/s on this machine)")  # fmt: skip


if __name__ == "__main__":
    main()
