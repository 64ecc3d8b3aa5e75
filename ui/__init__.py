"""The Gradio page over the `cxr_pneumonia` library: layout, event handlers and the text the visitor reads (the
"Your data" tab included); the library, cxr_pneumonia, knows nothing of them."""
