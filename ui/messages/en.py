"""The page's text in English: every string the visitor reads, keyed by name (the French table has the same keys)."""

from __future__ import annotations

MESSAGES: dict[str, str] = {
    # --- the page's fixed text (gr.I18n) ---
    "page_title": "Chest X-ray pneumonia demo",
    "title": "# Chest X-ray: pneumonia or normal?",
    "subtitle": "Upload a frontal chest X-ray or click an example: a small CNN trained on children and adults "
                "answers, with a heatmap of where its evidence lies.",
    "disclaimer": "**A demo, not a medical device.** Trained on frontal chest X-rays from two hospitals, not approved "
                  "by any regulator; it must not be used to diagnose anyone. Ask a clinician.",
    "image_tab": "Image",
    "file_tab": "DICOM or other file",
    "image_label": "Chest X-ray (JPEG, PNG, ...)",
    "file_label": "DICOM (.dcm), TIFF or any image file",
    "analyze": "Analyse",
    "examples_heading": "**Examples** (click one to analyse it)",
    "gallery_child": "Children (Kermany et al. 2018, Guangzhou), official test split",
    "gallery_adult": "Adults (RSNA Pneumonia Detection Challenge), held-out test split; the pneumonias have the "
                     "radiologists' boxes",
    "no_examples": "_No example images are available here (set EXAMPLES_DIR or EXAMPLES_REPO)._",
    "model_version": "Model version",
    "heatmap_settings": "Heatmap: method, opacity, radiologists' boxes",
    "method": "Explanation method",
    "boxes": "Show the radiologists' boxes",
    "boxes_info": "Only the adult pneumonia examples (RSNA test split) have them.",
    "opacity": "Heatmap opacity",
    "version": "Model version",
    "version_info": "Version tags on the Hub; switching loads that version once and keeps it.",
    "version_info_unlisted": "Version tags cannot be listed (the Hub is off or out of reach): only {version} is "
                             "served.",
    "prevalence": "Pneumonia prevalence where the X-ray is read, in % (drag or type)",
    "prevalence_info": "50 % by default; for instance 5 % in screening, 30 % in an emergency department.",
    "site_note": "**Deciding at the threshold fitted for {site}** on {n} normal X-rays ({threshold:.1f} %): about "
                 "{specificity:.0f} % of that site's normal X-rays are expected to be called normal (at least "
                 "{lower:.0f} %, one-sided 95 %).",
    "site_own_threshold": "Use the model's own threshold",
    "decision_at_site": "_At the threshold fitted for {site} on {n} normal X-rays ({threshold:.1f} %), not the "
                        "model's own._",
    "result_tab": "Result",
    "lab_tab": "Explanation lab",
    "heatmap": "Original and heatmap (drag the slider)",
    "gradio_click_to_upload": "Click to Upload",
    "probabilities": "Probabilities",
    "details": "Details: scores and threshold",
    "student_note_title": "How to read the heatmap (for students)",
    "json_title": "Result as JSON",
    "model_title": "Model",
    "curves": "Deletion and insertion curves",
    "lab_json": "Comparison as JSON",
    "trained_map": "{method}: trained model",
    "randomised_map": "{method}: top re-initialised",
    # --- the answer ---
    "class_PNEUMONIA": "PNEUMONIA",
    "class_NORMAL": "NORMAL",
    "decision_pneumonia": "**The model sees signs of pneumonia** (probability {percent:.0f} %). This is a demo, "
                          "not a diagnosis.",
    "decision_normal": "**The model sees no sign of pneumonia** (probability of pneumonia {percent:.0f} %). This is "
                       "a demo, not a diagnosis.",
    "decision_uncertain": "**The model cannot tell; a clinician must read the X-ray** (probability of pneumonia "
                          "{percent:.0f} %, inside its uncertain band).",
    "heatmap_line": "Heatmap: {method}, evidence for {label}.",
    "boxes_hint": "_Radiologists' boxes are known for this image: tick \"Show the radiologists' boxes\"._",
    "no_boxes": "No radiologists' boxes are known for this image: only the adult pneumonia examples have them.",
    "box_sentence": "The {method} map of {label} peaks **{where}** the radiologists' boxes; {share:.0f} % of its mass "
                    "lies in them, {ratio:.1f} times what a uniform map would put there.",
    "box_sentence_empty": "The {method} map of {label} is empty (no pixel has positive evidence): there is nothing "
                          "to hold against the boxes.",
    "refusal": "**This looks like {looks_like}, not a frontal chest X-ray: upload a frontal (PA or AP) chest X-ray.**",
    "refusal_unknown": "**This does not look like a frontal chest X-ray the model can read: upload a frontal (PA or "
                       "AP) chest X-ray.**",
    "kind_lateral_chest": "a side (lateral) view of the chest",
    "kind_other_body_part": "an X-ray of another part of the body",
    "kind_turned_chest": "a chest X-ray turned on its side or upside down",
    "kind_part_of_chest": "only part of a chest X-ray",
    "kind_not_xray": "a picture that is not an X-ray",
    "gate_details": "Input gate: {scores}; together {evidence:.3g} against a limit of {limit:.3g}. The gate compares "
                    "the image with the frontal chest X-rays the model was trained on, so a chest X-ray that looks "
                    "very different from those, for example cropped, rotated or with wide borders, can be refused "
                    "too.",
    "gate_score": "{name} {value:.3g} (usual up to {base:.3g})",
    "gate_score_feature_distance": "distance of the CNN's features from those of training chest X-rays",
    "gate_score_reconstruction_error": "error rebuilding a thumbnail from training chest X-ray patterns",
    "gate_score_not_frontal_chest": "log-odds of the gate's classifier that this is not a frontal chest X-ray",
    "details_prediction": "Pneumonia probability {percent:.1f} % against the decision threshold of "
                          "{threshold:.1f} %.{band}",
    "details_band": " Between {low:.0f} % and {high:.0f} % the model does not answer (uncertain band).",
    "details_no_band": " This model version has no uncertain band: it always answers.",
    "prevalence_result": "**At a prevalence of {prevalence:.0f} %: pneumonia probability {percent:.0f} %.**",
    "prevalence_why": "The probability is calibrated for X-rays of which {calibrated:.0f} % show pneumonia. Where "
                      "pneumonia is rarer (screening) the same X-ray is less likely to show it, and where it is "
                      "commoner (an emergency department) more likely: Bayes' rule on the odds.",
    "prevalence_unavailable": "_The prevalence control is unavailable for this model version: it does not state "
                              "the prevalence its probability is calibrated for._",
    # --- examples ---
    "example_caption": "{label}, {kind}",
    "example_choice": "{population}: {caption}",
    "population_child": "Child",
    "population_adult": "Adult",
    "lab_nothing_picked": "Pick an example or upload a chest X-ray first.",
    "reference": "Radiologists' label: **{label}**, {source} ({kind}).",
    "source_chest_xray": "Kermany test split",
    "source_rsna_pneumonia": "RSNA test split",
    "example_typical": "typical",
    "example_borderline": "borderline",
    "example_misclassified": "misclassified",
    # --- the visitor's mistakes ---
    "mistake_title": "Cannot analyse",
    "no_image": "Upload a chest X-ray or click one of the examples first.",
    "two_images": "Two images were given (an image and a file): send one.",
    "file_gone": "The uploaded file is no longer kept: upload it again.",
    "unknown_version": "Model version {version} cannot be served; available: {available}.",
    "unknown_version_unlisted": "Model version {version} cannot be served, and the list of versions cannot be "
                                "fetched (the Hub is off or out of reach).",
    "prevalence_out_of_range": "prevalence must lie strictly between 0 and 1, not {value}.",
    "none_available": "none",
    "decode_not_found": "The file was not found: upload it again.",
    "decode_colour_picture": "This picture is in strong colours, so it is not an X-ray: upload a chest X-ray (X-rays "
                             "are grey).",
    "decode_unopenable": "The file could not be opened: upload it again.",
    "decode_too_slow": "Reading the image took longer than {seconds:g} seconds, so it was stopped. Please upload a "
                       "smaller JPEG or PNG.",
    "decode_too_many_pixels": "The image has over {limit:,} pixels: please upload a smaller one.",
    "decode_too_many_bytes": "The file is {megabytes:.1f} MB, over the limit of {limit:.0f} MB.",
    "decode_too_small": "The image is {width}x{height} pixels: too small to read; each side needs at least "
                        "{minimum} pixels.",
    "decode_out_of_memory": "The image is too large to decode on this server.",
    "decode_damaged": "The file is damaged or incomplete (it may have been cut off during upload), so it could not "
                      "be read as an image.",
    "decode_blank": "The image is blank: every pixel has the same value.",
    "decode_invalid_pixels": "The image has invalid pixel values (not-a-number or infinite).",
    "decode_empty": "The file is empty.",
    "decode_not_an_image": "The file is {kind}, not an image. Please upload the X-ray as a JPEG, PNG, TIFF, WebP, "
                           "BMP, GIF or DICOM file.",
    "decode_unknown_format": "The file is not in an image format this app can read. Please upload the X-ray as a "
                             "JPEG, PNG, TIFF, WebP, BMP, GIF or DICOM file.",
    "decode_dicom_without_image": "The file is a DICOM file without an image (no pixel data); it may be a report "
                                  "or an index. Please upload the X-ray image itself.",
    "decode_dicom_colour_layout": "This DICOM file stores its pixels as '{layout}', which this app cannot display. "
                                  "Please export the X-ray as grayscale (MONOCHROME) DICOM, PNG or JPEG.",
    "decode_dicom_compressed": "This DICOM file is compressed in a way this app cannot decode ({compression}). "
                               "Please export it uncompressed, or as PNG or JPEG.",
    "non_image_pdf": "a PDF document",
    "non_image_zip": "a ZIP archive",
    "non_image_gzip": "a compressed (gzip) archive",
    "non_image_web_page": "a web page",
    "non_image_xml": "an XML document",
    "non_image_svg": "an SVG drawing",
    "non_image_heif": "an HEIC or AVIF photo",
    "non_image_text": "a text file",
    # --- the explanation lab ---
    "analyse_first": "Pick an example or upload a chest X-ray above and click **Explain**; the lab also explains "
                     "the image on the Result tab.",
    "lab_example": "An example",
    "lab_upload": "Or your own chest X-ray",
    "lab_run": "Explain",
    "lab_refused": "The input gate refused this image: there is nothing to explain.",
    "lab_intro": "Every method's map of the evidence for **{label}** (the model's decision), all {count} in "
                 "{ms:.0f} ms. The second image of each is the map of a copy of the model whose top layers are "
                 "re-initialised at random (the sanity check).",
    "lab_same_maps": "{first} and {others} give the same map here (see How to read the heatmap).",
    "and": " and ",
    "caption": "**{method}**: {ms:.0f} ms{boxes}{sanity}",
    "caption_box": "; peak {where} the boxes, {share:.0f} % of the map's mass in them",
    "caption_box_empty": "; an empty map",
    "caption_sanity": "; sanity check rho {rho:.2f}, {verdict}",
    "caption_sanity_pending": "; sanity check running...",
    "inside": "inside",
    "outside": "outside",
    "passes": "passes",
    "fails": "**fails**",
    "sanity_title": "**Sanity check: model-parameter randomisation** (Adebayo et al. 2018). A method passes when "
                    "the Spearman rank correlation between its map and the map of the copy with its top layers "
                    "(`{layers}`) re-initialised is below {limit} in size.",
    "sanity_header": "| method | Spearman rho | sanity check |\n|---|---:|---|",
    "sanity_row": "| {method} | {rho:.2f} | {verdict} |",
    "passed": "passed",
    "failed": "**failed**",
    "faithfulness_title": "**Deletion and insertion** (Petsiuk et al. 2018) for the probability of {label}: the "
                          "pixels each map ranks first are blurred first (deletion), or restored first into a "
                          "blurred copy (insertion).",
    "faithfulness_header": "| method | deletion AUC (lower is better) | insertion AUC (higher is better) |\n"
                           "|---|---:|---:|",
    "faithfulness_row": "| {method} | {deletion:.3f} | {insertion:.3f} |",
    "faithfulness_baseline": "The fully blurred copy alone scores {blurred:.2f} for {label}: no deletion curve can "
                             "fall below that, whatever the map. Our models read a blurred film as pneumonia (blur "
                             "looks like haze), so a PNEUMONIA map's deletion curve stays high.",
    "curve_deletion": "Deletion: top pixels blurred first (low AUC is good)",
    "curve_insertion": "Insertion: top pixels restored first (high AUC is good)",
    "curve_probability": "probability of {label}",
    "curve_share": "share of pixels changed",
    # --- the model panel ---
    "panel_repository": "**Repository:** [{repo}](https://huggingface.co/{repo})",
    "panel_revision": "**Revision:** `{revision}` (commit `{commit}`)",
    "panel_card": "**Model card:** [README.md](https://huggingface.co/{repo}/blob/{commit}/README.md)",
    "panel_bundled": "**Source: the model bundled with this Space** (`model/`), because {reason}. Its card is "
                     "`model_card.md` in the Space's files.",
    "fallback_offline": "HF_HUB_OFFLINE is set",
    "fallback_timeout": "the Hub did not deliver the model in time",
    "fallback_corrupt": "the download was corrupt",
    "fallback_unreachable": "the Hub could not be reached or refused the request",
    "panel_version": "**Version:** {version} · architecture `{architecture}`, {size}x{size} input, decision "
                     "threshold {threshold:.2f}",
    "panel_gate_on": "**Input gate:** on: images that do not look like a chest X-ray are refused",
    "panel_gate_off": "**Input gate:** none in this model version: every image is answered",
    "panel_tests": "**Test splits:**",
    "panel_test_row": "- {source}: {n} images, accuracy {accuracy:.3f}, AUC {auc:.3f}, sensitivity "
                      "{sensitivity:.3f}, specificity {specificity:.3f}",
    "source_name_chest_xray": "children (Kermany et al. 2018, official test split)",
    "source_name_rsna_pneumonia": "adults (RSNA, held-out test split)",
    "untagged": "untagged",
    # --- the "Your data" tab ---
    "your_data_tab": "Your data",
    "your_data_intro": "**How does the model do on your own labelled X-rays?** Upload one zip, in either layout:\n"
                       "- folders named `NORMAL` and `PNEUMONIA`, at any depth (the nearest such folder gives the "
                       "label);\n"
                       "- a `labels.csv` with the columns `filename,label` beside the images.\n\n"
                       "Any format the app reads counts, DICOM included; at most {max_images:,} images and "
                       "{max_megabytes:,.0f} MB unzipped. The images are read in a temporary folder that is deleted "
                       "when the evaluation ends; nothing is kept.",
    "your_data_upload": "Zip of labelled X-rays",
    "your_data_button": "Evaluate",
    "your_data_no_zip": "Upload a zip of labelled X-rays first.",
    "your_data_no_zip_title": "No zip",
    "your_data_refused_title": "Cannot evaluate this zip",
    "your_data_opening": "Opening the zip",
    "your_data_progress": "{done} of {total} images analysed, about {left:.0f} s left",
    "your_data_analysing_errors": "Analysing the errors for the gallery",
    "your_data_summary_head": "**{n} images of {name} evaluated** ({layout}) with the model {version} at its "
                              "threshold {threshold:.2f}.",
    "your_data_layout_csv": "labels.csv",
    "your_data_layout_folders": "labelled by their NORMAL and PNEUMONIA folders",
    "your_data_metric_header": "| | value | 95 % interval |\n|---|---:|---|",
    "your_data_metric_row": "| {name} | {value} | {low} to {high} |",
    "your_data_metric_unbounded": "| {name} | {value} | too few images to bound it |",
    "your_data_small_set": "_{n} images say little: under about {small} the figures above are rough, and an AUC of "
                           "1 or a specificity of 100 % is what a small set often shows by chance._",
    "your_data_sensitivity": "Sensitivity",
    "your_data_specificity": "Specificity",
    "your_data_accuracy": "Accuracy",
    "your_data_auc": "AUC",
    "your_data_none_read": "_No image could be read, so nothing can be measured: see the reasons beside each file._",
    "your_data_only_normal": "_Only NORMAL images were read: the AUC and the ROC curve need images of both classes, "
                             "and sensitivity needs PNEUMONIA images. Accuracy and specificity are shown._",
    "your_data_only_pneumonia": "_Only PNEUMONIA images were read: the AUC and the ROC curve need images of both "
                                "classes, and specificity needs NORMAL images. Accuracy and sensitivity are shown._",
    "your_data_refused_share": "**Input gate:** refused {n_refused} of {n} images ({share:.0%}); as on the command "
                               "line, the metrics above count them with their probability.",
    "your_data_refused_share_one": "**Input gate:** refused {n_refused} of {n} images ({share:.0%}); as on the "
                                   "command line, the metrics above count it with its probability.",
    "your_data_no_gate": "**Input gate:** this model has none.",
    "your_data_uncertain": "**UNCERTAIN:** {n_uncertain} of {n} images fall in the model's uncertain band, where a "
                           "clinician must read the X-ray; the metrics take the decision at the threshold.",
    "your_data_unreadable": "**Not read:** {n_unreadable} file(s); the table below gives each reason.",
    "your_data_confusion": "Confusion matrix",
    "your_data_roc": "ROC curve",
    "your_data_reliability": "Reliability diagram",
    "your_data_slider": "Another threshold (this only shows; the model keeps its own)",
    "your_data_at_threshold": "At threshold **{threshold:.2f}** these images would give sensitivity "
                              "**{sensitivity}** ({tp} of {positives} pneumonias found) and specificity "
                              "**{specificity}** ({tn} of {negatives} normals cleared). The model's threshold stays "
                              "{model_threshold:.2f}.",
    "your_data_skipped": "Files not evaluated, with the reason",
    "your_data_skipped_file": "file",
    "your_data_skipped_why": "why",
    "your_data_unlabelled_reason": "no label: not inside a NORMAL or PNEUMONIA folder, nor named in labels.csv",
    "your_data_errors": "The model's errors, most confident first: click one for its full analysis",
    "your_data_error_caption": "{label} read as {predicted} ({probability:.0%} pneumonia)",
    "your_data_error_heading": "**{name}**, labelled {label} in your zip.",
    "your_data_no_errors": "The model decided every image correctly at its threshold.",
    "your_data_csv": "Download the per-image results (CSV)",
    "your_data_error_original": "Original",
    "your_data_error_heatmap": "Heatmap",
    "your_data_not_measured": "n/a",
    "your_data_confusion_decision": "the model's decision",
    "your_data_confusion_truth": "your label",
    "your_data_confusion_title": "At the model's threshold of {threshold:.2f}",
    "your_data_roc_none": "No ROC curve:\nit needs images of both classes",
    "your_data_roc_yours": "your images (AUC {auc:.3f})",
    "your_data_roc_threshold": "the model's threshold ({threshold:.2f})",
    "your_data_roc_title": "ROC curve on your images",
    "your_data_roc_x": "1 - specificity (false-positive rate)",
    "your_data_roc_y": "sensitivity",
    "your_data_reliability_perfect": "perfect calibration",
    "your_data_reliability_yours": "your images",
    "your_data_reliability_x": "predicted pneumonia probability",
    "your_data_reliability_y": "share with pneumonia",
    "your_data_reliability_title": "Reliability: each point a bin, with its count",
    "your_data_ignored_symlink": "a symbolic link: links are not followed",
    "your_data_ignored_nested_zip": "a zip inside the zip: nested zips are not opened",
    "your_data_ignored_hidden": "a hidden or system file",
    "your_data_ignored_not_an_image": "not an image by its name",
    "your_data_zip_not_a_zip": "This file is not a zip archive that can be read.",
    "your_data_zip_too_many_entries": "The zip has {entries:,} entries; at most {max_images:,} images can be evaluated "
                                      "at once.",
    "your_data_zip_unsafe_path": "The zip holds an entry with an unsafe path ({name}): absolute paths and '..' are "
                                 "refused. Zip the folder itself, with relative paths.",
    "your_data_zip_too_many_images": "The zip holds {images:,} images; at most {max_images:,} can be evaluated at "
                                     "once. Split it into smaller zips.",
    "your_data_zip_entry_too_large": "The entry {name} inflates to {mebibytes:,.0f} MiB or more; each image may be at "
                                     "most {limit:,.0f} MiB.",
    "your_data_zip_total_too_large": "The zip inflates to {megabytes:,.0f} MB or more; at most {limit:,.0f} MB can be "
                                     "evaluated at once. Split it into smaller zips.",
    "your_data_zip_labels_too_large": "{name} is over {limit} MiB.",
    "your_data_zip_labels_not_utf8": "{name} is not a UTF-8 CSV file.",
    "your_data_zip_labels_no_header": "{name} needs a header row 'filename,label' and one row per image.",
    "your_data_zip_labels_bad_label": "{name} has the label {label} for {filename}: use NORMAL or PNEUMONIA.",
    "your_data_zip_no_images": "The zip holds no image. Put the images in folders named NORMAL and PNEUMONIA (at any "
                               "depth), or add a labels.csv with the columns filename,label beside them.",
    "your_data_zip_unlabelled_only": "The zip holds {unlabelled} image(s) without a label. Put the images in folders "
                                     "named NORMAL and PNEUMONIA (at any depth), or add a labels.csv with the columns "
                                     "filename,label beside them.",
    "your_data_zip_entry_damaged": "The zip entry is damaged: it could not be inflated.",
    "your_data_zip_entry_unsupported": "The zip entry is compressed in a way this app cannot read: zip it again with "
                                       "the usual (deflate) compression.",
    "your_data_zip_entry_encrypted": "The zip entry is encrypted (password-protected): zip the X-rays again without a "
                                     "password.",
    # --- for students ---
    "student_note": """
**How to read the heatmap.** Warm colours mark the regions whose features raised the score of the
class the model chose (Grad-CAM: gradients of that score weight the last convolutional layer's
feature maps). The map is coarse: it comes from a {grid}x{grid} grid, blown up to the image. SmoothGrad is
different in kind: the size of the score's gradient at each pixel, averaged over noisy copies, so it is
sharp but shows which pixels the score is *sensitive* to, not where the evidence is.

**What it does not prove.** A heatmap on the lungs does not mean the model is right, and it does not
show *what* the model saw there. Heat on text markers, the image border or outside the body is a sign
of a shortcut. The methods are different summaries of the same network; where they disagree, none of
them is the truth. (On a network that ends in global average pooling and one linear layer, as this one
does, Grad-CAM++ and Layer-CAM give the same map.) Saliency maps are known to mislead (Adebayo et al.
2018); the explanation lab lets you check a map yourself: the radiologists' boxes (does the map's peak fall
inside one, and how much of its mass lies there?), the sanity check (the same map from a copy of the model
whose top layers are re-initialised: if it barely changes, |rho| of {max_rho} or more, it shows edges, not
what the model learned) and deletion and insertion (blur the pixels the map ranks first and watch the
probability fall).

**Prevalence.** The same X-ray gives another probability where pneumonia is rarer or commoner: the
model's odds are multiplied by the ratio of the prior odds (Bayes' rule). The decision and the answer stay
those of the model's threshold.
""",
    # --- a site threshold ---
    "site_fit_title": "Fit a threshold for these X-rays (your site)",
    "site_fit_intro": "The model ranks another hospital's X-rays well, but no threshold chosen on our two sources "
                      "holds everywhere. Put at least {minimum} of your site's **normal** X-rays in the zip's NORMAL "
                      "folder ({recommended} or more recommended; pneumonias in PNEUMONIA, if you have them, measure "
                      "the sensitivity), choose the share of normal X-rays that must be called normal, and fit. The "
                      "profile stays in this page and in the file you download: nothing is kept on the server.",
    "site_name": "Site name",
    "site_name_placeholder": "e.g. St Mary's radiology",
    "site_target": "Target specificity, in % (normal X-rays called normal)",
    "site_fit_button": "Fit a threshold",
    "site_download": "Download the site profile (JSON)",
    "site_use": "Use it on this page",
    "site_upload": "Or load a saved site profile (.json)",
    "site_refused_title": "Cannot fit or use this profile",
    "site_error_too_few_normals": "Only {n} normal X-rays were accepted by the input gate; at least {needed} are "
                                  "needed for a specificity of {target:.0%}.",
    "site_error_bad_site": "Name the site (1 to {limit} characters).",
    "site_error_bad_target": "The target specificity must lie between {low:.0%} and {high:.0%}.",
    "site_error_malformed": "This file is not a site profile this app can read.",
    "site_error_malformed_keys": "This file is not a site profile this app can read.",
    "site_error_tampered": "This site profile was changed after it was fitted: fit it again rather than editing it.",
    "site_error_other_model": "This site profile was fitted for model {fitted_for}; the model here is {served}. Fit "
                              "it again on this model.",
    "site_profile_other_model": "The site profile in use was fitted for model {fitted_for}, not {served}: use the "
                                "model's own threshold, or fit a profile for this version.",
    "site_fitted": "**Threshold for {site}: {threshold:.1f} %** (pneumonia probability at or above it is called "
                   "pneumonia), fitted on {n} normal X-rays; the input gate refused {refused}. At a target of "
                   "{target:.0f} %, about **{specificity:.1f} %** of this site's normal X-rays are expected to be "
                   "called normal, and at least **{lower:.1f} %** (one-sided 95 % bound).",
    "site_sensitivity": "On your {n} pneumonias, the sensitivity at this threshold is **{sensitivity:.0f} %** (95 % "
                        "interval {low:.0f} to {high:.0f} %).",
    "site_no_sensitivity": "_Sensitivity not measured: {n} pneumonia X-rays were given, {minimum} or more are "
                           "needed._",
    "site_warning_low_sensitivity": "**Warning:** the sensitivity is below 90 %: at this threshold the model misses "
                                    "many pneumonias. Choose a lower target specificity.",
    "site_warning_few_normals": "_Fewer than {recommended} normal X-rays: the figure is rough (see the bound); "
                                "{recommended} or more are recommended._",
    "site_model": "_Fitted for model {version}; it applies to that version only._",
}
