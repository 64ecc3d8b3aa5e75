"""How long the page keeps files: removed after their time, unless the same upload came back meanwhile."""

from __future__ import annotations

import os
import time
from pathlib import Path

from ui.files import remove_later

SECONDS = 0.2


def settle() -> None:
    """Wait for the removal timers to have fired."""
    time.sleep(SECONDS + 0.5)


def test_a_file_is_removed_after_its_time_with_its_empty_folder(tmp_path: Path) -> None:
    kept = tmp_path / "upload-hash" / "chest.jpg"
    kept.parent.mkdir()
    kept.write_bytes(b"x-ray")
    remove_later([kept], SECONDS)
    assert kept.exists()
    settle()
    assert not kept.exists() and not kept.parent.exists()


def test_the_same_upload_again_before_the_removal_is_kept(tmp_path: Path) -> None:
    # Gradio names an upload's folder by its content: the same file uploaded again replaces the one planned for
    # removal, by a rename, and the second analysis must still find it.
    path = tmp_path / "upload-hash" / "chest.jpg"
    path.parent.mkdir()
    path.write_bytes(b"x-ray")
    remove_later([path], SECONDS)
    again = tmp_path / "incoming.tmp"
    again.write_bytes(b"x-ray")
    os.rename(again, path)
    settle()
    assert path.read_bytes() == b"x-ray"
    remove_later([path], SECONDS)
    settle()
    assert not path.exists()
