"""``file_lock``: one writer per output file, no lock file left, no planted link followed."""

import re

import pytest

from boltzflow.errors import BoltzflowError
from boltzflow.io.lock import file_lock


def test_a_second_writer_is_refused_and_the_lock_file_goes_with_the_first(tmp_path):
    out = tmp_path / "new {x}" / "samples.h5"  # braces: not a format field
    with file_lock(out, "samples file"):
        assert (out.parent / ".samples.h5.lock").is_file()
        with pytest.raises(BoltzflowError, match=re.escape(f"the samples file {out} is being written by process ")):
            with file_lock(out, "samples file"):
                pass
    assert not out.parent.exists()  # nothing written: the folder made for the lock is gone
    with file_lock(out):  # free again
        out.write_text("written")
    assert [p.name for p in out.parent.iterdir()] == ["samples.h5"]


def test_a_planted_link_is_not_followed(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("mine\n")
    (tmp_path / ".samples.h5.lock").symlink_to(victim)
    with pytest.raises(BoltzflowError, match="is a symbolic link"):
        with file_lock(tmp_path / "samples.h5"):
            pass
    assert victim.read_text() == "mine\n"
