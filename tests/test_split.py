"""Data sources and their splits: patient-grouped validation per source, the committed RSNA test split."""

import numpy as np

from tests.conftest import RSNA_DIR
from training.data import (
    concatenate,
    development_images,
    list_labelled_images,
    patient_id,
    read_test_split,
    source_of,
    split_by_patient,
    split_each_source,
    test_images,
)
from training.splits import TEST_FRACTION, held_out_paths


def test_patient_id_from_kermany_and_rsna_filenames():
    assert patient_id("train/PNEUMONIA/person123_bacteria_456.jpg") == "person123"
    assert patient_id("person123_virus_789.jpg") == "person123"
    assert patient_id("IM-0115-0001.jpg") == "IM-0115"
    assert patient_id("NORMAL2-IM-0427-0001.jpg") == "IM-0427"
    assert patient_id("IM-0011-0001-0002.jpg") == "IM-0011"
    assert patient_id("rsna_pneumonia/NORMAL/003d8fa0-6bf1-40ed-b54c-ac657f8495c5.jpg") == (
        "003d8fa0-6bf1-40ed-b54c-ac657f8495c5")


def test_sources_are_named_by_their_data_set_folder():
    assert source_of("/data/chest_xray/train/NORMAL/IM-0115-0001.jpeg") == "chest_xray"
    assert source_of("/data/chest_xray/test/PNEUMONIA/person1_virus_6.jpeg") == "chest_xray"
    assert source_of("/data/rsna_pneumonia/PNEUMONIA/abc.jpg") == "rsna_pneumonia"


def test_real_train_split_has_no_patient_on_both_sides(data_dir):
    images = list_labelled_images(data_dir / "train")
    fit, validation = split_by_patient(images, val_fraction=0.15, seed=42)
    fit_patients = {patient_id(path) for path in fit.paths}
    validation_patients = {patient_id(path) for path in validation.paths}
    assert not fit_patients & validation_patients
    assert len(fit) + len(validation) == len(images) == 5216
    # Both classes are represented in about the requested share.
    for label in (0, 1):
        share = (validation.labels == label).sum() / (images.labels == label).sum()
        assert 0.14 <= share <= 0.17


def test_split_is_reproducible_and_seeded(data_dir):
    images = list_labelled_images(data_dir / "train")
    assert split_by_patient(images, 0.15, 1)[1].paths == split_by_patient(images, 0.15, 1)[1].paths
    assert split_by_patient(images, 0.15, 1)[1].paths != split_by_patient(images, 0.15, 2)[1].paths


def test_rsna_test_split_file_is_the_seeded_rule_drawn_again():
    committed = read_test_split(RSNA_DIR)
    assert committed == held_out_paths(RSNA_DIR)  # stable across runs: the rule draws the file's split again
    everything = list_labelled_images(RSNA_DIR)
    for label, name in enumerate(("NORMAL", "PNEUMONIA")):
        share = sum(path.startswith(f"{name}/") for path in committed) / np.sum(everything.labels == label)
        assert abs(share - TEST_FRACTION) < 0.01


def test_rsna_test_and_development_images_partition_the_set_by_patient():
    test, development = test_images(RSNA_DIR), development_images(RSNA_DIR)
    assert len(test) + len(development) == len(list_labelled_images(RSNA_DIR)) == 1939
    assert {patient_id(p) for p in test.paths}.isdisjoint(patient_id(p) for p in development.paths)
    assert len(test) == len(read_test_split(RSNA_DIR))


def test_each_source_gets_its_own_patient_grouped_validation_split(data_dir):
    images = concatenate([development_images(data_dir), development_images(RSNA_DIR)])
    fit, validation = split_each_source(images, 0.15, 42)
    assert {patient_id(p) for p in fit.paths}.isdisjoint(patient_id(p) for p in validation.paths)
    for source in ("chest_xray", "rsna_pneumonia"):
        for label in (0, 1):
            in_source = images.of_source(source).labels == label
            share = np.sum(validation.of_source(source).labels == label) / in_source.sum()
            assert 0.14 <= share <= 0.17, (source, label, share)
