"""The picture of `jaxvae explore`: a click on one test point, then the pointer moved away.

make demo && .venv/bin/python docs/explore_screenshot.py runs/demo docs/explore.png
"""

import sys
import threading

from playwright.sync_api import sync_playwright

from jaxvae.explore import make_server

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip


def main(run_dir: str, out: str, example: int = 3) -> None:
    server = make_server(run_dir)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 960, "height": 690})
        page.goto(server.url)
        page.wait_for_selector("body[data-ready='1']")
        point = page.evaluate("i => jaxvaeExplore.pointOnScreen(i)", example)
        page.mouse.click(point["x"], point["y"])
        page.wait_for_selector(f"#selected[data-example='{example}']")
        page.mouse.move(point["x"] + 90, point["y"] + 50)
        page.evaluate("jaxvaeExplore.idle()")
        page.screenshot(path=out)
        browser.close()
    server.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:3])
