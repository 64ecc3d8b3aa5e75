"""Controls of our own: a slider that takes any typed number, brought within its range instead of refused."""

from __future__ import annotations

import gradio as gr


class ClampedSlider(gr.Slider):
    """gr.Slider whose typed value, when out of range, is brought to the nearest end instead of raising an error
    (Gradio's own answer is an English toast, an error badge and a traceback in the server's log)."""

    def get_block_name(self) -> str:
        """Render with gr.Slider's Svelte component; the class name would make the browser look for a custom one."""
        return "slider"

    def preprocess(self, payload: float) -> float:
        try:
            value = float(payload)
        except (TypeError, ValueError):
            value = float(self.value)
        if value != value:  # NaN
            value = float(self.value)
        return super().preprocess(min(max(value, self.minimum), self.maximum))
