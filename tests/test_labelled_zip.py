"""Reading zips of labelled X-rays: both layouts, the refusals and the limits, on real images."""

from __future__ import annotations

import io
import resource
import time
import zipfile
from pathlib import Path

import pytest

from cxr_pneumonia import labelled_zip
from cxr_pneumonia.labelled_zip import IGNORED_REASONS, ArchiveError, ArchiveTooLargeError, open_labelled_zip
from tests.labelled_zips import KERMANY_TEST, deflate_bomb, lying_bomb, symlink_entry, zip_entries

NORMAL_BYTES = (KERMANY_TEST / "NORMAL" / "IM-0001-0001.jpg").read_bytes()
PNEUMONIA_BYTES = (KERMANY_TEST / "PNEUMONIA" / "person100_bacteria_475.jpg").read_bytes()


def test_folders_at_any_depth_give_the_label_of_the_nearest(tmp_path: Path) -> None:
    source = zip_entries(tmp_path / "x.zip", {
        "hospital/2024/normal/a.jpg": NORMAL_BYTES,
        "hospital/PNEUMONIA/ward/b.jpg": PNEUMONIA_BYTES,
        "NORMAL/PNEUMONIA/c.jpg": PNEUMONIA_BYTES,
        "unsorted/d.jpg": NORMAL_BYTES,
    })
    with open_labelled_zip(source) as archive:
        labels = {image.name: image.label for image in archive.images}
        extracted = [image.path for image in archive.images]
        assert all(path.read_bytes() in (NORMAL_BYTES, PNEUMONIA_BYTES) for path in extracted)
        directory = extracted[0].parent.parent
    assert labels == {"hospital/2024/normal/a.jpg": "NORMAL", "hospital/PNEUMONIA/ward/b.jpg": "PNEUMONIA",
                      "NORMAL/PNEUMONIA/c.jpg": "PNEUMONIA"}
    assert archive.unlabelled == ["unsorted/d.jpg"] and archive.layout == "folders"
    assert not directory.exists(), "the temporary directory must be removed afterwards"


def test_labels_csv_beside_the_images(tmp_path: Path) -> None:
    source = zip_entries(tmp_path / "x.zip", {
        "set/labels.csv": b"filename,label\nxray1.jpg,pneumonia\nxray2.jpg,NORMAL\n",
        "set/xray1.jpg": PNEUMONIA_BYTES, "set/xray2.jpg": NORMAL_BYTES, "set/xray3.jpg": NORMAL_BYTES,
    })
    with open_labelled_zip(source) as archive:
        assert {image.name: image.label for image in archive.images} == {"set/xray1.jpg": "PNEUMONIA",
                                                                        "set/xray2.jpg": "NORMAL"}
        assert archive.unlabelled == ["set/xray3.jpg"] and archive.layout == "labels.csv"


@pytest.mark.parametrize("text, message, code", [
    (b"file,diagnosis\nx.jpg,NORMAL\n", "needs a header row 'filename,label'", "labels_no_header"),
    (b"filename,label\nx.jpg,maybe\n", "has the label 'maybe'", "labels_bad_label"),
])
def test_a_bad_labels_csv_says_what_is_wrong(tmp_path: Path, text: bytes, message: str, code: str) -> None:
    """In English, and by a code with its particulars for a page in another language."""
    source = zip_entries(tmp_path / "x.zip", {"labels.csv": text, "x.jpg": NORMAL_BYTES})
    with pytest.raises(ArchiveError, match=message) as refused, open_labelled_zip(source):
        pass
    assert refused.value.code == code and refused.value.values["name"] == "'labels.csv'"


@pytest.mark.parametrize("name", ["../NORMAL/a.jpg", "NORMAL/../../a.jpg", "/etc/NORMAL/a.jpg", "C:/NORMAL/a.jpg"])
def test_an_unsafe_path_refuses_the_whole_zip(tmp_path: Path, name: str) -> None:
    source = zip_entries(tmp_path / "x.zip", {"NORMAL/good.jpg": NORMAL_BYTES, name: NORMAL_BYTES})
    with pytest.raises(ArchiveError, match="unsafe path") as refused, open_labelled_zip(source):
        pass
    assert refused.value.status == 400
    assert refused.value.code == "unsafe_path" and refused.value.values == {"name": repr(name)}


def test_nested_zips_symlinks_and_other_files_are_ignored_and_listed(tmp_path: Path) -> None:
    source = tmp_path / "x.zip"
    with zipfile.ZipFile(source, "w") as archive:
        archive.writestr("NORMAL/a.jpg", NORMAL_BYTES)
        archive.writestr("NORMAL/more.zip", zip_entries(tmp_path / "inner.zip", {"NORMAL/b.jpg": NORMAL_BYTES})
                         .read_bytes())
        symlink_entry(archive, "PNEUMONIA/link.jpg", "/etc/passwd")
        archive.writestr("NORMAL/notes.txt", b"scanned on Monday")
        archive.writestr("__MACOSX/NORMAL/._a.jpg", b"\x00\x05\x16\x07")
    with open_labelled_zip(source) as archive:
        assert [image.name for image in archive.images] == ["NORMAL/a.jpg"]
        reasons = dict(archive.ignored)
    assert reasons == {"NORMAL/more.zip": "nested_zip", "PNEUMONIA/link.jpg": "symlink",
                       "NORMAL/notes.txt": "not_an_image", "__MACOSX/NORMAL/._a.jpg": "hidden"}
    assert "nested zips are not opened" in IGNORED_REASONS["nested_zip"]
    assert "links are not followed" in IGNORED_REASONS["symlink"]


def test_not_a_zip_is_a_clear_400(tmp_path: Path) -> None:
    with (pytest.raises(ArchiveError, match="not a zip archive") as refused,
          open_labelled_zip(io.BytesIO(PNEUMONIA_BYTES))):
        pass
    assert refused.value.code == "not_a_zip"


def peak_rss_growth_mb(action) -> float:
    """How far the process's peak resident memory rose above its current size while `action` ran, in MB."""
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current size
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    action()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before


def test_a_deflate_bomb_is_refused_from_its_declared_size_at_once(tmp_path: Path) -> None:
    source = deflate_bomb(tmp_path / "bomb.zip")
    assert source.stat().st_size < 1_000_000

    def open_bomb() -> None:
        with pytest.raises(ArchiveTooLargeError, match="each image may be at most 50 MiB"), open_labelled_zip(source):
            pass

    started = time.perf_counter()
    assert peak_rss_growth_mb(open_bomb) < 50
    assert time.perf_counter() - started < 2


def test_a_bomb_that_lies_about_its_size_is_cut_at_the_declared_size_and_listed(tmp_path: Path) -> None:
    """Headers claiming 1,000 bytes: inflating stops there, the checksum fails, the entry is listed as damaged."""
    source = lying_bomb(tmp_path / "bomb.zip")
    started = time.perf_counter()
    with open_labelled_zip(source) as archive:
        image = archive.images[0]
    assert image.path is None and "damaged" in image.error and image.reason.code == "entry_damaged"
    assert time.perf_counter() - started < 2


def test_inflated_bytes_are_counted_while_reading(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The actual bytes are checked too, chunk by chunk: with the declared-size check lowered past them."""
    source = zip_entries(tmp_path / "x.zip", {"NORMAL/a.jpg": bytes(3_000_000)})
    monkeypatch.setattr(labelled_zip, "MAX_ZIP_ENTRY_BYTES", 2_000_000)
    monkeypatch.setattr(labelled_zip, "check_declared_sizes", lambda infos: None)
    monkeypatch.setattr(labelled_zip, "CHUNK_BYTES", 500_000)
    with pytest.raises(ArchiveTooLargeError, match="each image may be at most"), open_labelled_zip(source):
        pass


def test_declared_totals_and_counts_are_limited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(labelled_zip, "MAX_ZIP_IMAGES", 3)
    four = zip_entries(tmp_path / "four.zip", {f"NORMAL/{index}.jpg": NORMAL_BYTES for index in range(4)})
    with pytest.raises(ArchiveTooLargeError, match="holds 4 images; at most 3") as refused, open_labelled_zip(four):
        pass
    assert refused.value.code == "too_many_images" and refused.value.values == {"images": 4, "max_images": 3}
    monkeypatch.setattr(labelled_zip, "MAX_ZIP_TOTAL_BYTES", 2 * len(NORMAL_BYTES))
    three = zip_entries(tmp_path / "three.zip", {f"NORMAL/{index}.jpg": NORMAL_BYTES for index in range(3)})
    with pytest.raises(ArchiveTooLargeError, match="MB can be evaluated at once"), open_labelled_zip(three):
        pass
