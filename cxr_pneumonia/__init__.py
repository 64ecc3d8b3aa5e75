"""Chest X-ray pneumonia classification: decoding, model, explanation and Hub access.

This library never imports Gradio; `app.py` is a thin UI over it.
"""
