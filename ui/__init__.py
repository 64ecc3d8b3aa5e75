"""The Gradio page over the `cxr_pneumonia` library: layout, event handlers and the text the visitor reads."""
