"""Set aside the patient-level test split of a data set that has no official one, once, as a file.

    python -m training.splits --data ../shared/data/rsna_pneumonia

Writes training/splits/<data set>_test.csv (20 % of each class, whole patients, seeded). Training and
every choice made on validation read it and never touch these images; only the final evaluation does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from training.data import list_labelled_images, relative_path, split_by_patient, test_split_file

TEST_FRACTION = 0.2
TEST_SEED = 20261130


def held_out_paths(data_dir: str | Path, fraction: float = TEST_FRACTION, seed: int = TEST_SEED) -> list[str]:
    """CLASS/file paths of the seeded, class-stratified, patient-grouped test split."""
    _, test = split_by_patient(list_labelled_images(data_dir), fraction, seed)
    return sorted(relative_path(path) for path in test.paths)


def write_test_split(data_dir: str | Path, fraction: float = TEST_FRACTION, seed: int = TEST_SEED) -> Path:
    """Write the split file of `data_dir`; refuses to overwrite one that differs."""
    out = test_split_file(data_dir)
    paths = held_out_paths(data_dir, fraction, seed)
    text = (f"# test split of {Path(data_dir).resolve().name}: {fraction:.0%} of each class, whole patients, "
            f"seed {seed} (python -m training.splits); never used for a choice\npath\n" + "\n".join(paths) + "\n")
    if out.is_file() and out.read_text() != text:
        raise FileExistsError(f"{out} exists with another split; a test split is set once and never redrawn")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with NORMAL/ and PNEUMONIA/")
    args = parser.parse_args(argv)
    print(write_test_split(args.data))


if __name__ == "__main__":
    main()
