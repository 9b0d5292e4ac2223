"""One writer per run folder: a second `jaxvae train` into a folder another process writes is refused, and a lock
left by a killed process is taken over. The holder is a child process that says when it holds the lock (a line
on a pipe), so nothing here waits on time."""

import json
import os
import subprocess
import sys

import pytest

from conftest import spawn
from jaxvae.cli import main
from jaxvae.errors import InputError
from jaxvae.lock import LOCK_FILE, FolderLocked, locked

HOLD = """import sys
from jaxvae.lock import locked
with locked(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()
"""  # holds the lock of the folder sys.argv[1] until its stdin closes


def run_main(argv, capsys) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


@pytest.fixture
def holder(tmp_path):
    """A child process holding the lock of tmp_path / "run", which holds a config.json; yields the process."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model": {"data_shape": [8, 8]}, "train": {}}))
    args = [sys.executable, "-c", HOLD, str(folder)]
    with spawn(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as process:
        assert process.stdout.readline() == "held\n"
        yield process


def test_a_second_writer_is_refused_with_the_first_s_process_id_and_writes_nothing(holder, tmp_path, capsys):
    folder = tmp_path / "run"
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert before[LOCK_FILE] == f"{holder.pid}\n".encode()
    with pytest.raises(FolderLocked) as caught:
        with locked(folder):
            pass
    assert caught.value.pid == holder.pid
    for argv in (
        ["train", "--out", folder, "--quiet"],
        ["train", "--out", folder, "--overwrite", "--quiet"],
        ["train", "--out", folder, "--resume", "--epochs", "5", "--quiet"],
    ):
        code, err = run_main(argv, capsys)
        assert (
            code == 2
            and err
            == f"jaxvae: error: {folder} is being written by process {holder.pid}: wait for it to end, or stop it\n"
        ), (argv, err)
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_lock_left_by_a_killed_process_is_taken_over(holder, tmp_path):
    folder = tmp_path / "run"
    holder.kill()
    holder.wait()  # reaped: the kernel has closed its files, and let go of its lock
    assert (folder / LOCK_FILE).read_text() == f"{holder.pid}\n"  # what it left behind
    with locked(folder):
        assert (folder / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    assert sorted(p.name for p in folder.iterdir()) == ["config.json"]  # the lock file goes with the lock


def test_the_lock_is_taken_again_after_it_is_let_go_and_a_read_only_place_is_one_line(tmp_path):
    with locked(tmp_path):
        pass
    with locked(tmp_path):
        assert (tmp_path / LOCK_FILE).read_text() == f"{os.getpid()}\n"
    (tmp_path / "file").write_text("")
    with pytest.raises(InputError, match=f"cannot write {tmp_path / 'file'}: Not a directory") as caught:
        with locked(tmp_path / "file"):
            pass
    assert not isinstance(caught.value, FolderLocked)
