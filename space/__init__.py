"""The Hugging Face Space: settings (`config`), the service the UI calls (`service`), uploads, rendering and the
Gradio layout (`ui`). `app.py` at the repository root builds it and launches it."""
