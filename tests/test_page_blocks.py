"""Every command and Python block of the README and of Getting started runs as a new user runs it, in a fresh
folder, and each sample output on those pages has the lines that the command before it prints now.

Short settings where a page's command takes minutes: Fashion-MNIST runs become runs of the embedded digits
(so that the test needs no download and no installed dataset) with `--epochs 2`, L_K is evaluated with
`--iw-samples 100` on `--n 100` examples, and `explore` serves on a free port (`--port 0`). A command that
ran so has its sample output compared label by label, every number standing for any number; `make demo`
runs as the Makefile says, and its output is compared number for number (all but tqdm's times). The commands
that other checks cover are named below with the check; any other command fails this test until it is run or
named here.
"""

import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md", "docs/getting-started.md"]
BIN = Path(sys.executable).parent

COVERED_ELSEWHERE = {  # command prefix -> the check that covers it
    "make test": "the test suite itself",
    "make docs": "tests/test_docs.py builds the site with the same `mkdocs build --strict`",
    ".venv/bin/mkdocs serve": "tests/test_docs.py builds the site",
    "python3 -m venv .venv": ".ci/wheel installs the built wheel in a fresh virtual environment",
    ".venv/bin/pip install": ".ci/wheel installs jaxvae without the dev extras; `make` installs the dev extras",
    ".venv/bin/tensorboard": "TensorBoard's own server; tests/test_board.py reads what --tensorboard writes",
    ".venv/bin/jupyter lab": "tests/test_tutorial.py executes the notebook",
}
SHORTER = [  # (pattern, replacement) in a page's command, and in its sample output where the name shows
    (r"--dataset fashion-mnist", "--dataset digits"),
    (r"--epochs 5\b", "--epochs 2"),
    (r"(jaxvae evaluate \S+)", r"\1 --iw-samples 100"),
    (r"--n 500\b", "--n 100"),
    (r"(jaxvae explore \S+)", r"\1 --port 0"),
    (r"\bfashion-mnist,", "digits,"),  # the dataset the report names
]
PYTHON_CHECKS = {  # (page, index of its Python block) -> what the block's comments say, as assertions
    ("README.md", 0): "n, k = len(x), 2\n"
    "assert x.shape == (n, 64) and q.mean.shape == q.std.shape == (n, k)\n"
    "assert p.log_prob(x).shape == (n,) and p.mean.shape == (n, 64) and z.shape == (16, k)\n",
    ("docs/getting-started.md", 0): "n, k = len(x), 2\n"
    "assert x.shape == (n, 64) and q.mean.shape == q.std.shape == (n, k)\n"
    "assert z.shape == (S, n, k) and log_q.shape == (S, n) and vae.prior().log_prob(z).shape == (S, n)\n"
    "assert p.log_prob(x).shape == (n,) and p.mean.shape == (n, 64)\n",
}
COMMAND = re.compile(r"(make|jaxvae|python3|\.venv/bin/)\S*( |$)")


def blocks(page: str) -> list[tuple[str, list[str]]]:
    """The page's fenced blocks in order: (language, lines)."""
    found = re.findall(r"^```(\w*)\n(.*?)^```", (ROOT / page).read_text(), flags=re.MULTILINE | re.DOTALL)
    return [(language, text.splitlines()) for language, text in found]


def makefile_recipe(target: str) -> str:
    """The command of a one-line Makefile target, with the venv's bin folder for $(BIN)."""
    makefile = (ROOT / "Makefile").read_text()
    (recipe,) = re.findall(rf"^{target}:.*\n\t(.+)", makefile, flags=re.MULTILINE)
    return recipe.replace("$(BIN)/", f"{BIN}/")


def shortened(command: str) -> str:
    for pattern, replacement in SHORTER:
        command = re.sub(pattern, replacement, command)
    return command


def last_lines(output: str) -> list[str]:
    """Printed lines as a terminal leaves them: of a line that tqdm redraws with carriage returns, the last."""
    return [line.split("\r")[-1].rstrip() for line in output.split("\n") if line.split("\r")[-1].strip()]


def shape(line: str, numbers: bool) -> str:
    """A line to compare: spaces collapsed, tqdm's times left out, and with `numbers` False every number a #."""
    line = re.sub(r"\[[^,\]]*, [^,\]]*(epoch/s|s/epoch), ", "[", " ".join(line.split()))
    return line if numbers else re.sub(r"-?\d+(\.\d+)?(e-?\d+)?", "#", line)


def run_command(command: str, cwd: Path) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "PYTHONUNBUFFERED": "1"}
    if command.split()[:2] == ["jaxvae", "explore"]:
        return serve_once(command, cwd, env)
    result = subprocess.run(command, shell=True, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output = result.stdout.decode()  # not text=True, whose universal newlines would make tqdm's redraws lines
    assert result.returncode == 0, f"{command}\n{output}"
    return output


def serve_once(command: str, cwd: Path, env: dict) -> str:
    """Start the explore server, fetch its page from the URL it prints, and stop it as Ctrl-C would."""
    server = subprocess.Popen(command.split(), cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        url = re.search(r"http://\S+/", line)
        assert url, f"{command} printed {line!r}"
        with urllib.request.urlopen(url.group(), timeout=60) as page:
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0
    return line


def run_page(page: str, cwd: Path, outputs: dict[str, str]) -> list[str]:
    """Run the page's blocks in order in `cwd`, a command that `outputs` holds not again; returns what was run,
    substituted or covered elsewhere."""
    log, output, exact = [], None, False
    for index, (language, lines) in enumerate(blocks(page)):
        if language == "python":
            number = sum(1 for lang, _ in blocks(page)[:index] if lang == "python")
            code = "\n".join(lines) + "\n" + PYTHON_CHECKS.get((page, number), "")
            result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)
            assert result.returncode == 0, f"{page}, Python block {number}:\n{result.stderr}"
            log.append(f"python block {number}")
        elif lines and all(COMMAND.match(line) for line in lines):
            for line in lines:
                command = line.split(" #")[0].strip()
                covered = [prefix for prefix in COVERED_ELSEWHERE if command.startswith(prefix)]
                if covered:
                    log.append(f"{command}: {COVERED_ELSEWHERE[covered[0]]}")
                    continue
                if command == "make demo":
                    to_run, exact = makefile_recipe("demo"), True
                elif command.startswith("jaxvae "):
                    to_run = shortened(command)
                    exact = to_run == command
                else:
                    raise AssertionError(f"{page}: `{command}` is neither run by this test nor covered elsewhere")
                if to_run not in outputs:
                    outputs[to_run] = run_command(to_run, cwd)
                output = outputs[to_run]
                log.append(to_run)
        elif lines:  # a sample output: that of the last command run
            assert output is not None, f"{page}: a sample output before any command ran: {lines[0]}"
            expected = [shape(shortened(line), exact) for line in lines]
            printed = [shape(line, exact) for line in last_lines(output)]
            assert printed == expected, f"{page}: the sample output differs from what the tool prints now"
    return log


@pytest.mark.slow
def test_every_block_of_the_pages_runs_and_their_outputs_are_what_the_tool_prints(tmp_path):
    """The pages in one folder, as a reader follows the README and then Getting started: the demo trains once."""
    outputs = {}
    for page in PAGES:
        log = run_page(page, tmp_path, outputs)
        assert any(" train " in entry for entry in log) and any("python" in entry for entry in log), log
