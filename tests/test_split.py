"""The validation split is grouped by patient: no child on both sides."""

from training.data import list_labelled_images, patient_id, split_by_patient


def test_patient_id_from_kermany_filenames():
    assert patient_id("train/PNEUMONIA/person123_bacteria_456.jpg") == "person123"
    assert patient_id("person123_virus_789.jpg") == "person123"
    assert patient_id("IM-0115-0001.jpg") == "IM-0115"
    assert patient_id("NORMAL2-IM-0427-0001.jpg") == "IM-0427"
    assert patient_id("IM-0011-0001-0002.jpg") == "IM-0011"


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
