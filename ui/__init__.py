"""The page's UI modules (Gradio); the library, cxr_pneumonia, knows nothing of them."""
