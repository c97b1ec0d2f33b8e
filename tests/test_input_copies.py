"""Inputs are copied onto the volume by content and never rewritten under a running reader.

``pipelines.local.run.stage_data`` puts ``--data X`` at ``data/<X.name>@<digest>/<X.name>``: written in a
scratch directory with its manifest last, renamed into place, reused when the same content is there.
Two tables that share a name get two copies, so a run still reading the first never sees the second.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from components import names
from components.lib import storage
from components.parameters import model_name_for
from pipelines.local.run import _input_state, stage_data

REPO = Path(__file__).resolve().parents[1]
HEADER = "age,sex,bmi,children,smoker,region,charges\n"
ROW_A = "19,female,27.9,0,yes,southwest,16884.92\n"
ROW_B = "33,male,22.7,0,no,northwest,21984.47\n"


def table(path: Path, row: str, rows: int = 50) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + row * rows)
    return path


def stage(root: Path, data: Path | None, lines: list[str] | None = None) -> Path:
    """Stage ``data``; return the copy's absolute path."""
    rel = stage_data(root, data, log=(lines.append if lines is not None else lambda _: None))
    return root / rel


def copies(root: Path) -> list[str]:
    return sorted(p.name for p in (root / names.DATA_DIR).iterdir() if "@" in p.name)


def test_a_second_table_of_the_same_file_name_never_replaces_the_copy_a_run_reads(tmp_path):
    root = tmp_path / "volume"
    a = table(tmp_path / "a" / "insurance.csv", ROW_A)
    b = table(tmp_path / "b" / "insurance.csv", ROW_B)
    first = stage(root, a)
    with open(first, newline="") as reader:  # run A is reading its input, line by line
        head = [next(reader), next(reader)]
        second = stage(root, b)  # run B starts meanwhile with another table of that name
        rest = reader.read()
    assert first != second and first.name == second.name == "insurance.csv"
    assert "".join(head) + rest == a.read_text()  # A read only its own table
    assert first.read_text() == a.read_text() and second.read_text() == b.read_text()
    assert model_name_for("", str(first.relative_to(root))) == "insurance"
    assert model_name_for("", str(second.relative_to(root))) == "insurance"
    assert len(copies(root)) == 2


def test_a_folder_run_keeps_reading_its_own_files_while_another_folder_of_that_name_arrives(tmp_path):
    root = tmp_path / "volume"
    for part in ("part-1.csv", "part-2.csv"):
        table(tmp_path / "a" / "exports" / part, ROW_A)
        table(tmp_path / "b" / "exports" / part, ROW_B, rows=7)
    first = stage(root, tmp_path / "a" / "exports")
    files = sorted(first.iterdir())  # the reader lists the folder, reads one file...
    seen = [files[0].read_text()]
    stage(root, tmp_path / "b" / "exports")
    seen.append(files[1].read_text())  # ...and the next one after B was staged
    assert seen == [HEADER + ROW_A * 50] * 2
    assert model_name_for("", str(first.relative_to(root))) == "exports"


def test_the_same_table_twice_is_one_copy_reused(tmp_path):
    root = tmp_path / "volume"
    a = table(tmp_path / "a" / "claims.csv", ROW_A)
    lines: list[str] = []
    first = stage(root, a, lines)
    made = first.stat().st_mtime_ns, first.stat().st_ino
    again = stage(root, table(tmp_path / "elsewhere" / "claims.csv", ROW_A), lines)
    assert again == first and (again.stat().st_mtime_ns, again.stat().st_ino) == made
    assert copies(root) == [first.parent.name] and "not copied again" in lines[-1]
    manifest = json.loads((first.parent / storage.COPY_MANIFEST).read_text())
    assert first.parent.name == f"claims.csv@{manifest['sha256'][: storage.DIGEST_CHARS]}"
    assert manifest["sha256"] == storage.content_digest(a)
    assert not [p for p in (root / names.DATA_DIR).iterdir() if p.name.startswith(storage.INCOMING_PREFIX)]
    umask = os.umask(0)
    os.umask(umask)
    assert first.parent.stat().st_mode & 0o777 == 0o777 & ~umask  # the umask's modes, not mkdtemp's 0700


def test_the_generated_default_data_is_copied_by_content_and_keeps_its_model_name(tmp_path):
    root = tmp_path / "volume"
    first = stage(root, None)
    assert first.relative_to(root).parts[:2] == (names.DATA_DIR, first.parent.name)
    assert first.parent.name.startswith("insurance.csv@") and first.name == "insurance.csv"
    assert first.read_bytes() == (root / names.DEFAULT_DATA_FILE).read_bytes()
    assert stage(root, None) == first
    assert model_name_for("", str(first.relative_to(root))) == names.MODEL_NAME


def test_data_already_on_the_storage_root_is_used_in_place(tmp_path):
    root = tmp_path / "volume"
    own = table(root / names.DATA_DIR / "mine" / "prices.csv", ROW_A)
    assert stage_data(root, own, log=lambda _: None) == "data/mine/prices.csv"
    assert copies(root) == []


def test_a_damaged_copy_under_the_final_name_is_set_aside_not_used(tmp_path):
    root = tmp_path / "volume"
    a = table(tmp_path / "a" / "insurance.csv", ROW_A)
    first = stage(root, a)
    first.write_text(HEADER + ROW_A)  # truncated by hand: its manifest's size no longer matches
    lines: list[str] = []
    again = stage(root, a, lines)
    assert again == first and again.read_text() == a.read_text()
    assert any("set aside as .insurance.csv@" in line for line in lines), lines
    assert len([p for p in (root / names.DATA_DIR).iterdir() if ".damaged-" in p.name]) == 1


KILLED_MIDWAY = """
    import os, signal, sys
    from pathlib import Path
    from components.lib import storage
    from pipelines.local.run import stage_data

    def copy_then_die(source, scratch, digest):
        (scratch / source.name).write_bytes(source.read_bytes()[:100])  # half the table, no manifest
        os.kill(os.getpid(), signal.SIGKILL)

    storage._copy_with_manifest = copy_then_die
    stage_data(Path(sys.argv[1]), Path(sys.argv[2]), log=print)
"""


def test_a_copy_killed_midway_is_never_used_and_its_scratch_is_removed_by_the_next_run(tmp_path):
    root = tmp_path / "volume"
    a = table(tmp_path / "a" / "insurance.csv", ROW_A)
    code = textwrap.dedent(KILLED_MIDWAY)
    killed = subprocess.run([sys.executable, "-c", code, str(root), str(a)], cwd=REPO, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()[-2000:]
    [left] = [p for p in (root / names.DATA_DIR).iterdir() if p.name.startswith(storage.INCOMING_PREFIX)]
    assert left.name.startswith(f"{storage.INCOMING_PREFIX}{socket.gethostname()}-")
    assert copies(root) == []  # nothing under a final name

    copy = stage(root, a)  # the next run copies it whole
    assert copy.read_text() == a.read_text()
    assert storage.clean_scratch(root) == [f"{left}: removed, left by a killed stage"]
    assert not left.exists() and copy.exists()


def test_an_input_changed_after_the_preflight_read_it_is_refused_in_one_line(tmp_path):
    root = tmp_path / "volume"
    a = table(tmp_path / "a" / "insurance.csv", ROW_A)
    read = _input_state(root, a, {})
    table(a, ROW_B, rows=60)  # rewritten between the preflight and the copy
    with pytest.raises(ValueError) as e:
        stage_data(root, a, log=lambda _: None, before=read)
    message = str(e.value)
    assert message.startswith(f"[submit] {a}: input data changed while the run was starting")
    assert "\n" not in message
    assert _input_state(root, a, {"data": "data/x.csv"}) is None  # named by the parameter: not copied
    os.utime(a, ns=(0, 0))
    read = _input_state(root, a, {})
    assert stage_data(root, a, log=lambda _: None, before=read).endswith("/insurance.csv")
