"""Checks on the repository itself: what a bad merge or a move could leave behind."""
import re
import subprocess

from tests.support.procs import REPO

MARKER = re.compile(r"^(<{7}|>{7}) ", re.M)


def tracked_text_files():
    out = subprocess.run(["git", "ls-files"], cwd=REPO, stdout=subprocess.PIPE, text=True,
                         check=True).stdout.split()
    for name in out:
        path = REPO / name
        if path.suffix in {".py", ".md", ".sh", ".cfg", ".toml", ".service", ".yml", ".yaml"} \
                or path.name in {"Makefile", "run"}:
            yield path


def test_no_merge_conflict_markers_are_committed():
    found = []
    for path in tracked_text_files():
        try:
            text = path.read_text(errors="replace")
        except (FileNotFoundError, IsADirectoryError):
            continue
        for match in MARKER.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            found.append("%s:%d" % (path.relative_to(REPO), line))
    assert not found, "merge conflict markers left in: %s" % ", ".join(found)
