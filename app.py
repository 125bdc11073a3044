"""Hugging Face Space entry point: load the configured models once, build the app from `space/`, launch it.

Models come from `space/models.json` or `DEEPFAKE_MODELS="folder,owner/name@rev"` (default: the models that
`models/defaults.json` names); see `space/config.py`. Gradio's own `GRADIO_SERVER_NAME`, `GRADIO_SERVER_PORT` and
`GRADIO_TEMP_DIR` choose the address, the port and where uploads land. Importing this module loads nothing and calls
no network.

    python app.py
"""
from __future__ import annotations

from typing import Any

import gradio as gr

from space.config import SpaceConfig, load_space_config
from space.service import DetectorService
from space.ui import CSS, build_demo


def create_app(config: SpaceConfig | None = None) -> tuple[gr.Blocks, SpaceConfig]:
    """Load the models of `config` (default: the resolved settings) and build the app around them."""
    config = config or load_space_config()
    service = DetectorService.from_sources(config.models, config.inconclusive_margin, config.headline)
    return build_demo(service, config), config


def launch(demo: gr.Blocks, config: SpaceConfig, **kwargs: Any) -> Any:
    """Start the server without the Node SSR process, with the app's CSS; Gradio refuses uploads above the
    configured size."""
    return demo.launch(ssr_mode=False, max_file_size=config.max_upload_bytes, css=CSS, **kwargs)


if __name__ == "__main__":
    launch(*create_app())
