"""The data sets the models are trained and tested on, each named once: its folder under the data root (also its
key in metrics.json and the examples manifest) and the English facts the model card, the example picker and the
offline explanation lab state about it. The page's own words for them, in each language, are in ui/messages.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DataSource:
    """One data set of chest X-rays labelled NORMAL or PNEUMONIA."""

    name: str  # its folder under the data root
    short_name: str  # in table headers
    population: str  # who is in it, in one word: the examples manifest's column
    people: str  # who is in it, and where from
    test_split: str  # the test split its test metrics come from
    provenance: str  # where its images come from and on what terms: every example row carries it
    has_boxes: bool  # radiologists' opacity boxes on its pneumonias (boxes.csv)


CHILDREN = DataSource(
    name="chest_xray",
    short_name="Kermany",
    population="child",
    people="children aged one to five (Kermany et al. 2018, Guangzhou)",
    test_split="Kermany et al. 2018, official test split",
    provenance="Kermany et al. 2018, doi:10.17632/rscbjbr9sj.2, official test split, CC BY 4.0",
    has_boxes=False,
)
ADULTS = DataSource(
    name="rsna_pneumonia",
    short_name="RSNA",
    population="adult",
    people="adults (RSNA Pneumonia Detection Challenge, NIH Clinical Center)",
    test_split="RSNA Pneumonia Detection Challenge, held-out 20 % test split",
    provenance="RSNA Pneumonia Detection Challenge 2018, NIH Clinical Center images, held-out test split; research "
               "use; cite Shih et al. 2019 (Radiology: AI) and Wang et al. 2017 (ChestX-ray8)",
    has_boxes=True,
)
SOURCES = {source.name: source for source in (CHILDREN, ADULTS)}  # children first, as the examples are listed
