"""Le texte de la page en français : les mêmes clés que le tableau anglais (ui/messages/en.py)."""

from __future__ import annotations

MESSAGES: dict[str, str] = {
    # --- le texte fixe de la page (gr.I18n) ---
    "page_title": "Démo pneumonie sur radiographie thoracique",
    "title": "# Radiographie thoracique : pneumonie ou normale ?",
    "subtitle": "Déposez une radiographie thoracique de face ou cliquez sur un exemple : un petit réseau de "
                "neurones convolutif, entraîné sur des enfants et des adultes, répond et montre sur une carte de "
                "chaleur où se trouvent ses indices.",
    "disclaimer": "**Une démonstration, pas un dispositif médical.** Entraîné sur des radiographies thoraciques de "
                  "face de deux hôpitaux, non autorisé par une autorité sanitaire ; il ne doit servir à "
                  "diagnostiquer personne. Demandez l'avis d'un médecin.",
    "image_tab": "Image",
    "file_tab": "DICOM ou autre fichier",
    "image_label": "Radiographie thoracique (JPEG, PNG…)",
    "file_label": "Fichier DICOM (.dcm), TIFF ou toute autre image",
    "analyze": "Analyser",
    "examples_heading": "**Exemples** (cliquez sur l'un d'eux pour l'analyser)",
    "gallery_child": "Enfants (Kermany et al. 2018, Guangzhou), jeu de test officiel",
    "gallery_adult": "Adultes (RSNA Pneumonia Detection Challenge), jeu de test réservé ; les pneumonies portent "
                     "les cadres tracés par les radiologues",
    "no_examples": "_Aucun exemple n'est disponible ici (définissez EXAMPLES_DIR ou EXAMPLES_REPO)._",
    "model_version": "Version du modèle",
    "heatmap_settings": "Carte de chaleur : méthode, opacité, cadres des radiologues",
    "method": "Méthode d'explication",
    "boxes": "Afficher les cadres des radiologues",
    "boxes_info": "Seuls les exemples de pneumonie chez l'adulte (jeu de test RSNA) en ont.",
    "opacity": "Opacité de la carte de chaleur",
    "version": "Version du modèle",
    "version_info": "Versions publiées sur le Hub ; en choisir une la charge une fois et la garde.",
    "version_info_unlisted": "Impossible d'obtenir la liste des versions (Hub désactivé ou injoignable) : seule la "
                             "version {version} est servie.",
    "prevalence": "Prévalence de la pneumonie là où la radiographie est lue, en % (glisser ou saisir)",
    "prevalence_info": "50 % par défaut ; par exemple 5 % en dépistage, 30 % aux urgences.",
    "site_note": "**Décision au seuil ajusté pour {site}** sur {n} radiographies normales ({threshold:.1f} %) : "
                 "environ {specificity:.0f} % des radiographies normales de ce site devraient être dites normales "
                 "(au moins {lower:.0f} %, unilatéral à 95 %).",
    "site_own_threshold": "Revenir au seuil du modèle",
    "decision_at_site": "_Au seuil ajusté pour {site} sur {n} radiographies normales ({threshold:.1f} %), non à "
                        "celui du modèle._",
    "result_tab": "Résultat",
    "lab_tab": "Explications",
    "heatmap": "Original et carte (faites glisser)",
    "gradio_click_to_upload": "Cliquez pour choisir un fichier",
    "probabilities": "Probabilités",
    "details": "Détails : scores et seuil",
    "student_note_title": "Comment lire la carte de chaleur (pour les étudiants)",
    "json_title": "Résultat en JSON",
    "model_title": "Modèle",
    "curves": "Courbes de suppression et d'insertion",
    "lab_json": "Comparaison en JSON",
    "trained_map": "{method} : modèle entraîné",
    "randomised_map": "{method} : couches hautes réinitialisées",
    # --- la réponse ---
    "class_PNEUMONIA": "PNEUMONIE",
    "class_NORMAL": "NORMALE",
    "decision_pneumonia": "**Le modèle voit des signes de pneumonie** (probabilité {percent:.0f} %). C'est une "
                          "démonstration, pas un diagnostic.",
    "decision_normal": "**Le modèle ne voit aucun signe de pneumonie** (probabilité de pneumonie {percent:.0f} %). "
                       "C'est une démonstration, pas un diagnostic.",
    "decision_uncertain": "**Le modèle ne peut pas trancher ; un médecin doit lire la radiographie** (probabilité "
                          "de pneumonie {percent:.0f} %, dans sa zone d'incertitude).",
    "heatmap_line": "Carte de chaleur : {method}, indices en faveur de : {label}.",
    "boxes_hint": "_Les cadres des radiologues sont connus pour cette image : cochez « Afficher les cadres des "
                  "radiologues »._",
    "no_boxes": "Aucun cadre de radiologue n'est connu pour cette image : seuls les exemples de pneumonie chez "
                "l'adulte en ont.",
    "box_sentence": "La carte {method} de la classe {label} culmine **{where}** des cadres des radiologues ; "
                    "{share:.0f} % de sa masse s'y trouve, {ratio:.1f} fois ce qu'y mettrait une carte uniforme.",
    "box_sentence_empty": "La carte {method} de la classe {label} est vide (aucun pixel n'apporte d'indice "
                          "positif) : rien à confronter aux cadres.",
    "refusal": "**Cette image ressemble à {looks_like}, pas à une radiographie thoracique de face : déposez une "
               "radiographie thoracique de face (PA ou AP).**",
    "refusal_unknown": "**Cette image ne ressemble pas à une radiographie thoracique de face que le modèle sait "
                       "lire : déposez une radiographie thoracique de face (PA ou AP).**",
    "kind_lateral_chest": "une radiographie thoracique de profil",
    "kind_other_body_part": "une radiographie d'une autre partie du corps",
    "kind_turned_chest": "une radiographie thoracique tournée sur le côté ou à l'envers",
    "kind_part_of_chest": "une partie seulement d'une radiographie thoracique",
    "kind_not_xray": "une image qui n'est pas une radiographie",
    "gate_details": "Filtre d'entrée : {scores} ; au total {evidence:.3g} pour une limite de {limit:.3g}. Le filtre "
                    "compare l'image aux radiographies thoraciques de face sur lesquelles le modèle a été entraîné : "
                    "une radiographie thoracique très différente de celles-ci, par exemple recadrée, tournée ou "
                    "avec de larges bords, peut aussi être refusée.",
    "gate_score": "{name} {value:.3g} (habituellement jusqu'à {base:.3g})",
    "gate_score_feature_distance": "distance entre les caractéristiques du réseau et celles des radiographies "
                                   "d'entraînement",
    "gate_score_reconstruction_error": "erreur de reconstruction d'une vignette à partir des motifs des "
                                       "radiographies d'entraînement",
    "gate_score_not_frontal_chest": "log-cote, selon le classifieur du filtre, que ce ne soit pas une "
                                    "radiographie thoracique de face",
    "details_prediction": "Probabilité de pneumonie {percent:.1f} % pour un seuil de décision de "
                          "{threshold:.1f} %.{band}",
    "details_band": " Entre {low:.0f} % et {high:.0f} %, le modèle ne répond pas (zone d'incertitude).",
    "details_no_band": " Cette version du modèle n'a pas de zone d'incertitude : elle répond toujours.",
    "prevalence_result": "**Pour une prévalence de {prevalence:.0f} % : probabilité de pneumonie "
                         "{percent:.0f} %.**",
    "prevalence_why": "La probabilité est calibrée pour des radiographies dont {calibrated:.0f} % montrent une "
                      "pneumonie. Là où la pneumonie est plus rare (dépistage), la même radiographie a moins de "
                      "chances d'en montrer une, et là où elle est plus fréquente (urgences), davantage : c'est le "
                      "théorème de Bayes appliqué aux cotes, à partir de la probabilité pré-test.",
    "prevalence_unavailable": "_Le réglage de prévalence n'est pas disponible pour cette version du modèle : elle "
                              "n'indique pas la prévalence pour laquelle sa probabilité est calibrée._",
    # --- les exemples ---
    "example_choice": "{population} : {caption}",
    "population_child": "Enfant",
    "population_adult": "Adulte",
    "lab_nothing_picked": "Choisissez d'abord un exemple ou déposez une radiographie thoracique.",
    "example_caption": "{label}, {kind}",
    "reference": "Diagnostic des radiologues : **{label}**, {source} ({kind}).",
    "source_chest_xray": "jeu de test Kermany",
    "source_rsna_pneumonia": "jeu de test RSNA",
    "example_typical": "typique",
    "example_borderline": "limite",
    "example_misclassified": "mal classé",
    # --- les erreurs du visiteur ---
    "mistake_title": "Analyse impossible",
    "no_image": "Déposez d'abord une radiographie thoracique ou cliquez sur l'un des exemples.",
    "two_images": "Deux images ont été données (une image et un fichier) : n'en envoyez qu'une.",
    "file_gone": "Le fichier déposé n'est plus conservé : déposez-le à nouveau.",
    "unknown_version": "La version {version} du modèle ne peut pas être servie ; versions disponibles : "
                       "{available}.",
    "unknown_version_unlisted": "La version {version} du modèle ne peut pas être servie, et la liste des versions "
                                "est inaccessible (Hub désactivé ou injoignable).",
    "prevalence_out_of_range": "la prévalence doit être strictement comprise entre 0 et 1, et non {value}.",
    "none_available": "aucune",
    "decode_colour_picture": "Cette image est en couleurs vives : ce n'est pas une radiographie. Déposez une "
                             "radiographie thoracique (les radiographies sont en gris).",
    "decode_not_found": "Le fichier est introuvable : déposez-le à nouveau.",
    "decode_unopenable": "Le fichier n'a pas pu être ouvert : déposez-le à nouveau.",
    "decode_too_slow": "La lecture de l'image a pris plus de {seconds:g} secondes et a été arrêtée. Déposez un "
                       "JPEG ou un PNG plus petit.",
    "decode_too_many_pixels": "L'image dépasse {limit:,} pixels : déposez-en une plus petite.",
    "decode_too_many_bytes": "Le fichier pèse {megabytes:.1f} Mo, au-delà de la limite de {limit:.0f} Mo.",
    "decode_too_small": "L'image fait {width}x{height} pixels : trop petite pour être lue ; chaque côté doit "
                        "mesurer au moins {minimum} pixels.",
    "decode_out_of_memory": "L'image est trop grande pour être décodée sur ce serveur.",
    "decode_damaged": "Le fichier est endommagé ou incomplet (il a peut-être été tronqué pendant l'envoi) : il n'a "
                      "pas pu être lu comme une image.",
    "decode_blank": "L'image est uniforme : tous ses pixels ont la même valeur.",
    "decode_invalid_pixels": "L'image contient des valeurs de pixel invalides (non numériques ou infinies).",
    "decode_empty": "Le fichier est vide.",
    "decode_not_an_image": "Le fichier est {kind}, pas une image. Déposez la radiographie au format JPEG, PNG, "
                           "TIFF, WebP, BMP, GIF ou DICOM.",
    "decode_unknown_format": "Le fichier n'est pas dans un format d'image que cette application sait lire. Déposez "
                             "la radiographie au format JPEG, PNG, TIFF, WebP, BMP, GIF ou DICOM.",
    "decode_dicom_without_image": "Le fichier est un DICOM sans image (pas de données de pixels) ; c'est peut-être "
                                  "un compte rendu ou un index. Déposez l'image radiographique elle-même.",
    "decode_dicom_colour_layout": "Ce fichier DICOM code ses pixels en « {layout} », que cette application ne sait "
                                  "pas afficher. Exportez la radiographie en DICOM en niveaux de gris "
                                  "(MONOCHROME), en PNG ou en JPEG.",
    "decode_dicom_compressed": "Ce fichier DICOM est compressé d'une façon que cette application ne sait pas "
                               "décoder ({compression}). Exportez-le sans compression, ou en PNG ou JPEG.",
    "non_image_pdf": "un document PDF",
    "non_image_zip": "une archive ZIP",
    "non_image_gzip": "une archive compressée (gzip)",
    "non_image_web_page": "une page web",
    "non_image_xml": "un document XML",
    "non_image_svg": "un dessin SVG",
    "non_image_heif": "une photo HEIC ou AVIF",
    "non_image_text": "un fichier texte",
    # --- le laboratoire d'explications ---
    "analyse_first": "Choisissez un exemple ou déposez une radiographie thoracique ci-dessus, puis cliquez sur "
                     "**Expliquer** ; l'onglet explique aussi l'image de l'onglet Résultat.",
    "lab_example": "Un exemple",
    "lab_upload": "Ou votre propre radiographie thoracique",
    "lab_run": "Expliquer",
    "lab_refused": "Le filtre d'entrée a refusé cette image : il n'y a rien à expliquer.",
    "lab_intro": "La carte des indices en faveur de **{label}** (la décision du modèle) selon chaque méthode, les "
                 "{count} en {ms:.0f} ms. La seconde image de chacune est la carte d'une copie du modèle dont les "
                 "couches hautes sont réinitialisées au hasard (le test de cohérence).",
    "lab_same_maps": "{first} et {others} donnent ici la même carte (voir Comment lire la carte de chaleur).",
    "and": " et ",
    "caption": "**{method}** : {ms:.0f} ms{boxes}{sanity}",
    "caption_box": " ; pic {where} des cadres, {share:.0f} % de la masse de la carte dans ceux-ci",
    "caption_box_empty": " ; carte vide",
    "caption_sanity": " ; test de cohérence rho {rho:.2f}, {verdict}",
    "caption_sanity_pending": " ; test de cohérence en cours…",
    "inside": "à l'intérieur",
    "outside": "en dehors",
    "passes": "réussi",
    "fails": "**échoué**",
    "sanity_title": "**Test de cohérence : randomisation des paramètres du modèle** (Adebayo et al. 2018). Une "
                    "méthode le réussit quand la corrélation de rang de Spearman entre sa carte et celle de la copie "
                    "dont les couches hautes (`{layers}`) sont réinitialisées reste inférieure à {limit} en valeur "
                    "absolue.",
    "sanity_header": "| méthode | rho de Spearman | test de cohérence |\n|---|---:|---|",
    "sanity_row": "| {method} | {rho:.2f} | {verdict} |",
    "passed": "réussi",
    "failed": "**échoué**",
    "faithfulness_title": "**Suppression et insertion** (Petsiuk et al. 2018) pour la probabilité de {label} : les "
                          "pixels que chaque carte classe en premier sont floutés d'abord (suppression), ou restaurés "
                          "d'abord dans une copie floutée (insertion).",
    "faithfulness_header": "| méthode | aire sous la courbe de suppression (plus basse = mieux) | aire sous la "
                           "courbe d'insertion (plus haute = mieux) |\n|---|---:|---:|",
    "faithfulness_row": "| {method} | {deletion:.3f} | {insertion:.3f} |",
    "faithfulness_baseline": "La copie entièrement floutée obtient à elle seule {blurred:.2f} pour {label} : aucune "
                             "courbe de suppression ne peut descendre plus bas, quelle que soit la carte. Nos "
                             "modèles lisent un cliché flou comme une pneumonie (le flou ressemble à une opacité), "
                             "si bien que la courbe de suppression d'une carte de PNEUMONIE reste haute.",
    "curve_deletion": "Suppression : pixels les mieux classés floutés d'abord (aire basse = mieux)",
    "curve_insertion": "Insertion : pixels les mieux classés restaurés d'abord (aire haute = mieux)",
    "curve_probability": "probabilité de {label}",
    "curve_share": "part des pixels modifiés",
    # --- le panneau du modèle ---
    "panel_repository": "**Dépôt :** [{repo}](https://huggingface.co/{repo})",
    "panel_revision": "**Révision :** `{revision}` (commit `{commit}`)",
    "panel_card": "**Fiche du modèle (en anglais) :** [README.md](https://huggingface.co/{repo}/blob/{commit}/"
                  "README.md)",
    "panel_bundled": "**Source : le modèle fourni avec ce Space** (`model/`), car {reason}. Sa fiche est "
                     "`model_card.md` parmi les fichiers du Space.",
    "fallback_offline": "HF_HUB_OFFLINE est défini",
    "fallback_timeout": "le Hub n'a pas fourni le modèle à temps",
    "fallback_corrupt": "le téléchargement était corrompu",
    "fallback_unreachable": "le Hub était injoignable ou a refusé la requête",
    "panel_version": "**Version :** {version} · architecture `{architecture}`, entrée de {size}x{size}, seuil de "
                     "décision {threshold:.2f}",
    "panel_gate_on": "**Filtre d'entrée :** actif : les images qui ne ressemblent pas à une radiographie "
                     "thoracique sont refusées",
    "panel_gate_off": "**Filtre d'entrée :** aucun dans cette version du modèle : toute image reçoit une réponse",
    "panel_tests": "**Jeux de test :**",
    "panel_test_row": "- {source} : {n} images, exactitude {accuracy:.3f}, AUC {auc:.3f}, sensibilité "
                      "{sensitivity:.3f}, spécificité {specificity:.3f}",
    "source_name_chest_xray": "enfants (Kermany et al. 2018, jeu de test officiel)",
    "source_name_rsna_pneumonia": "adultes (RSNA, jeu de test réservé)",
    "untagged": "sans étiquette",
    # --- l'onglet « Vos données » ---
    "your_data_tab": "Vos données",
    "your_data_intro": "**Que donne le modèle sur vos propres radiographies thoraciques de face, déjà étiquetées ?** "
                       "Déposez un fichier zip, organisé de l'une de ces deux façons :\n"
                       "- des dossiers nommés `NORMAL` et `PNEUMONIA`, à n'importe quelle profondeur (le plus proche "
                       "de ces dossiers donne l'étiquette) ;\n"
                       "- un fichier `labels.csv` aux colonnes `filename,label`, à côté des images.\n\n"
                       "Tous les formats que l'application sait lire sont acceptés, DICOM compris ; au plus "
                       "{max_images} images et {max_megabytes:.0f} Mo une fois décompressé. Les images sont lues dans "
                       "un dossier temporaire, supprimé à la fin de l'évaluation : rien n'est conservé.",
    "your_data_upload": "Zip de radiographies étiquetées",
    "your_data_button": "Évaluer",
    "your_data_no_zip": "Déposez d'abord un zip de radiographies étiquetées.",
    "your_data_no_zip_title": "Aucun zip",
    "your_data_refused_title": "Impossible d'évaluer ce zip",
    "your_data_opening": "Ouverture du zip",
    "your_data_progress": "{done} images analysées sur {total}, encore {left:.0f} s environ",
    "your_data_analysing_errors": "Analyse des erreurs pour la galerie",
    "your_data_summary_head": "**{n} images de {name} évaluées** ({layout}) par le modèle {version}, à son seuil "
                              "de décision de {threshold:.2f}.",
    "your_data_layout_csv": "étiquettes lues dans labels.csv",
    "your_data_layout_folders": "étiquetées par leurs dossiers NORMAL et PNEUMONIA",
    "your_data_metric_header": "| | valeur | intervalle de confiance à 95 % |\n|---|---:|---|",
    "your_data_metric_unbounded": "| {name} | {value} | trop peu d'images pour l'encadrer |",
    "your_data_small_set": "_{n} images disent peu de chose : sous {small} environ, les chiffres ci-dessus sont "
                           "approximatifs, et une AUC de 1 ou une spécificité de 100 % est ce qu'un petit ensemble "
                           "montre souvent par hasard._",
    "your_data_metric_row": "| {name} | {value} | {low} à {high} |",
    "your_data_sensitivity": "Sensibilité",
    "your_data_specificity": "Spécificité",
    "your_data_accuracy": "Exactitude",
    "your_data_auc": "AUC",
    "your_data_none_read": "_Aucune image n'a pu être lue, donc rien ne peut être mesuré : voyez la raison indiquée "
                           "pour chaque fichier._",
    "your_data_only_normal": "_Seules des images NORMALES ont été lues : l'AUC et la courbe ROC demandent des images "
                             "des deux classes, et la sensibilité des images de PNEUMONIE. L'exactitude et la "
                             "spécificité sont indiquées._",
    "your_data_only_pneumonia": "_Seules des images de PNEUMONIE ont été lues : l'AUC et la courbe ROC demandent des "
                                "images des deux classes, et la spécificité des images NORMALES. L'exactitude et la "
                                "sensibilité sont indiquées._",
    "your_data_refused_share": "**Filtre d'entrée :** {n_refused} images refusées sur {n} ({share:.0%}) ; comme en "
                               "ligne de commande, les mesures ci-dessus les comptent avec leur probabilité.",
    "your_data_refused_share_one": "**Filtre d'entrée :** {n_refused} image refusée sur {n} ({share:.0%}) ; comme "
                                   "en ligne de commande, les mesures ci-dessus la comptent avec sa probabilité.",
    "your_data_no_gate": "**Filtre d'entrée :** ce modèle n'en a pas.",
    "your_data_uncertain": "**INCERTAIN :** {n_uncertain} images sur {n} tombent dans la zone d'incertitude du modèle, "
                           "où un médecin doit lire la radiographie ; les mesures retiennent la décision prise au "
                           "seuil.",
    "your_data_unreadable": "**Non lus :** {n_unreadable} fichier(s) ; le tableau ci-dessous donne la raison de "
                            "chacun.",
    "your_data_confusion": "Matrice de confusion",
    "your_data_roc": "Courbe ROC",
    "your_data_reliability": "Diagramme de fiabilité",
    "your_data_slider": "Un autre seuil de décision (pour voir seulement : le modèle garde le sien)",
    "your_data_at_threshold": "Au seuil de **{threshold:.2f}**, ces images donneraient une sensibilité de "
                              "**{sensitivity}** ({tp} pneumonies reconnues sur {positives}) et une spécificité de "
                              "**{specificity}** ({tn} radiographies normales reconnues sur {negatives}). Le seuil du "
                              "modèle reste {model_threshold:.2f}.",
    "your_data_skipped": "Fichiers non évalués, avec la raison",
    "your_data_skipped_file": "fichier",
    "your_data_skipped_why": "raison",
    "your_data_unlabelled_reason": "sans étiquette : ni dans un dossier NORMAL ou PNEUMONIA, ni nommé dans labels.csv",
    "your_data_errors": "Les erreurs du modèle, en commençant par celles commises avec le plus d'assurance : cliquez "
                        "sur l'une d'elles pour voir son analyse complète",
    "your_data_error_caption": "{label} classée {predicted} (pneumonie {probability:.0%})",
    "your_data_error_heading": "**{name}**, étiquetée {label} dans votre zip.",
    "your_data_no_errors": "Le modèle a classé correctement toutes les images à son seuil de décision.",
    "your_data_csv": "Télécharger les résultats image par image (CSV)",
    "your_data_error_original": "Original",
    "your_data_error_heatmap": "Carte de chaleur",
    "your_data_not_measured": "n.d.",
    "your_data_confusion_decision": "décision du modèle",
    "your_data_confusion_truth": "votre étiquette",
    "your_data_confusion_title": "Au seuil de décision du modèle ({threshold:.2f})",
    "your_data_roc_none": "Pas de courbe ROC :\nil faut des images des deux classes",
    "your_data_roc_yours": "vos images (AUC {auc:.3f})",
    "your_data_roc_threshold": "seuil du modèle ({threshold:.2f})",
    "your_data_roc_title": "Courbe ROC sur vos images",
    "your_data_roc_x": "1 - spécificité (taux de faux positifs)",
    "your_data_roc_y": "sensibilité",
    "your_data_reliability_perfect": "calibration parfaite",
    "your_data_reliability_yours": "vos images",
    "your_data_reliability_x": "probabilité de pneumonie prédite",
    "your_data_reliability_y": "proportion observée de pneumonies",
    "your_data_reliability_title": "Fiabilité : chaque point est un intervalle de probabilité, avec son effectif",
    "your_data_ignored_symlink": "un lien symbolique : les liens ne sont pas suivis",
    "your_data_ignored_nested_zip": "un zip dans le zip : les zips imbriqués ne sont pas ouverts",
    "your_data_ignored_hidden": "un fichier caché ou système",
    "your_data_ignored_not_an_image": "pas une image, d'après son nom",
    "your_data_zip_not_a_zip": "Ce fichier n'est pas une archive zip lisible.",
    "your_data_zip_too_many_entries": "Le zip contient {entries} entrées ; au plus {max_images} images peuvent être "
                                      "évaluées à la fois.",
    "your_data_zip_unsafe_path": "Le zip contient une entrée au chemin dangereux ({name}) : les chemins absolus et "
                                 "« .. » sont refusés. Zippez le dossier lui-même, avec des chemins relatifs.",
    "your_data_zip_too_many_images": "Le zip contient {images} images ; au plus {max_images} peuvent être évaluées à "
                                     "la fois. Répartissez-les entre plusieurs zips plus petits.",
    "your_data_zip_entry_too_large": "L'entrée {name} fait {mebibytes:.0f} Mio ou plus une fois décompressée ; chaque "
                                     "image est limitée à {limit:.0f} Mio.",
    "your_data_zip_total_too_large": "Le zip fait {megabytes:.0f} Mo ou plus une fois décompressé ; au plus "
                                     "{limit:.0f} Mo peuvent être évalués à la fois. Répartissez les images entre "
                                     "plusieurs zips plus petits.",
    "your_data_zip_labels_too_large": "{name} dépasse {limit} Mio.",
    "your_data_zip_labels_not_utf8": "{name} n'est pas un fichier CSV encodé en UTF-8.",
    "your_data_zip_labels_no_header": "{name} doit avoir une ligne d'en-tête « filename,label » puis une ligne par "
                                      "image.",
    "your_data_zip_labels_bad_label": "{name} donne l'étiquette {label} à {filename} : utilisez NORMAL ou PNEUMONIA.",
    "your_data_zip_no_images": "Le zip ne contient aucune image. Placez les images dans des dossiers nommés NORMAL et "
                               "PNEUMONIA (à n'importe quelle profondeur), ou ajoutez à côté d'elles un fichier "
                               "labels.csv aux colonnes filename,label.",
    "your_data_zip_unlabelled_only": "Le zip contient {unlabelled} image(s) sans étiquette. Placez les images dans des "
                                     "dossiers nommés NORMAL et PNEUMONIA (à n'importe quelle profondeur), ou ajoutez "
                                     "à côté d'elles un fichier labels.csv aux colonnes filename,label.",
    "your_data_zip_entry_damaged": "L'entrée du zip est endommagée : elle n'a pas pu être décompressée.",
    "your_data_zip_entry_unsupported": "L'entrée du zip est compressée d'une façon que cette application ne sait pas "
                                       "lire : refaites le zip avec la compression habituelle (deflate).",
    "your_data_zip_entry_encrypted": "L'entrée du zip est chiffrée (protégée par un mot de passe) : refaites le zip "
                                     "des radiographies sans mot de passe.",
    # --- pour les étudiants ---
    "student_note": """
**Comment lire la carte de chaleur.** Les couleurs chaudes marquent les régions dont les caractéristiques ont
fait monter le score de la classe choisie par le modèle (Grad-CAM : les gradients de ce score pondèrent les
cartes de caractéristiques de la dernière couche de convolution). La carte est grossière : elle vient d'une
grille de {grid}x{grid}, agrandie à la taille de l'image. SmoothGrad est d'une autre nature : l'amplitude du
gradient du score en chaque pixel, moyennée sur des copies bruitées ; la carte est nette mais montre les
pixels auxquels le score est *sensible*, pas l'endroit où se trouvent les indices.

**Ce qu'elle ne prouve pas.** Une carte de chaleur sur les poumons ne signifie pas que le modèle a raison, et
elle ne montre pas *ce que* le modèle y a vu. De la chaleur sur des marqueurs écrits, sur le bord de l'image ou
hors du corps trahit un raccourci. Les méthodes résument différemment le même réseau ; là où elles divergent,
aucune n'est la vérité. (Sur un réseau qui se termine par une moyenne globale et une seule couche linéaire,
comme celui-ci, Grad-CAM++ et Layer-CAM donnent la même carte.) Les cartes de saillance peuvent tromper
(Adebayo et al. 2018) ; l'onglet Explications vous permet de vérifier une carte vous-même : les cadres
des radiologues (le pic de la carte tombe-t-il dans l'un d'eux, et quelle part de sa masse s'y trouve ?), le
test de cohérence (la même carte calculée sur une copie du modèle dont les couches hautes sont réinitialisées :
si elle change à peine, |rho| de {max_rho} ou plus, elle montre des contours, pas ce que le modèle a appris) et
la suppression et l'insertion (flouter les pixels que la carte classe en premier et regarder la probabilité
chuter).

**Prévalence.** La même radiographie donne une autre probabilité là où la pneumonie est plus rare ou plus
fréquente : la cote du modèle est multipliée par le rapport des cotes pré-test (théorème de Bayes). La décision
et la réponse restent celles du seuil de décision du modèle.
""",
    # --- un seuil pour le site ---
    "site_fit_title": "Ajuster un seuil pour ces radiographies (votre site)",
    "site_fit_intro": "Le modèle classe bien les radiographies d'un autre hôpital, mais aucun seuil choisi sur nos "
                      "deux sources ne tient partout. Mettez au moins {minimum} radiographies **normales** de votre "
                      "site dans le dossier NORMAL du zip ({recommended} ou plus conseillées ; des pneumonies dans "
                      "PNEUMONIA, si vous en avez, mesurent la sensibilité), choisissez la part des radiographies "
                      "normales qui doit être dite normale, et ajustez. Le profil reste dans cette page et dans le "
                      "fichier que vous téléchargez : rien n'est gardé sur le serveur.",
    "site_name": "Nom du site",
    "site_name_placeholder": "p. ex. radiologie de l'hôpital Sainte-Marie",
    "site_target": "Spécificité visée, en % (radiographies normales dites normales)",
    "site_fit_button": "Ajuster un seuil",
    "site_download": "Télécharger le profil du site (JSON)",
    "site_use": "L'utiliser sur cette page",
    "site_upload": "Ou charger un profil de site enregistré (.json)",
    "site_refused_title": "Impossible d'ajuster ou d'utiliser ce profil",
    "site_error_too_few_normals": "Seules {n} radiographies normales ont été acceptées par le filtre d'entrée ; il "
                                  "en faut au moins {needed} pour une spécificité de {target:.0%}.",
    "site_error_bad_site": "Nommez le site (de 1 à {limit} caractères).",
    "site_error_bad_target": "La spécificité visée doit être comprise entre {low:.0%} et {high:.0%}.",
    "site_error_malformed": "Ce fichier n'est pas un profil de site que cette application sait lire.",
    "site_error_malformed_keys": "Ce fichier n'est pas un profil de site que cette application sait lire.",
    "site_error_tampered": "Ce profil de site a été modifié après son ajustement : ajustez-le à nouveau plutôt que de "
                           "le modifier.",
    "site_error_other_model": "Ce profil de site a été ajusté pour le modèle {fitted_for} ; le modèle ici est "
                              "{served}. Ajustez-le à nouveau sur ce modèle.",
    "site_profile_other_model": "Le profil de site utilisé a été ajusté pour le modèle {fitted_for}, non {served} : "
                                "revenez au seuil du modèle, ou ajustez un profil pour cette version.",
    "site_fitted": "**Seuil pour {site} : {threshold:.1f} %** (une probabilité de pneumonie égale ou supérieure est "
                   "dite pneumonie), ajusté sur {n} radiographies normales ; le filtre d'entrée en a refusé "
                   "{refused}. Pour une cible de {target:.0f} %, environ **{specificity:.1f} %** des radiographies "
                   "normales de ce site devraient être dites normales, et au moins **{lower:.1f} %** (borne "
                   "unilatérale à 95 %).",
    "site_sensitivity": "Sur vos {n} pneumonies, la sensibilité à ce seuil est de **{sensitivity:.0f} %** "
                        "(intervalle à 95 % de {low:.0f} à {high:.0f} %).",
    "site_no_sensitivity": "_Sensibilité non mesurée : {n} radiographies de pneumonie fournies, il en faut {minimum} "
                           "ou plus._",
    "site_warning_low_sensitivity": "**Attention :** la sensibilité est inférieure à 90 % : à ce seuil le modèle "
                                    "manque beaucoup de pneumonies. Choisissez une spécificité visée plus basse.",
    "site_warning_few_normals": "_Moins de {recommended} radiographies normales : le chiffre est approximatif (voir "
                                "la borne) ; {recommended} ou plus sont conseillées._",
    "site_model": "_Ajusté pour le modèle {version} ; il ne vaut que pour cette version._",
}
