"""The Gradio app: handlers (the only place errors become `gr.Error`), then the gr.Blocks layout, then the events.

`/detect` returns only JSON; the Detect tab's pictures come from a chained private event that reuses the image
bytes kept in session state, so API callers pay for none of them. Uploaded files are deleted by the handler
that reads them.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd
from gradio.data_classes import FileData, ImageData, ListFiles
from gradio.processing_utils import save_bytes_to_cache
from gradio.utils import get_upload_folder
from pydantic import model_validator

from hub_utils.images import ImageError, load_image
from hub_utils.model_folder import ModelFolderError

from . import render
from .config import SpaceConfig
from .service import DetectorService, NoModelError
from .uploads import UploadError, take_batch, take_upload

SPACE_DIR = Path(__file__).resolve().parent
EXAMPLES_DIR = SPACE_DIR / "examples"
ABOUT_FILE = SPACE_DIR / "about.md"
IMAGE_STATE_SECONDS = 120  # how long the image bytes wait in session state for the pictures event
HELD_PHOTO_SECONDS = 1800  # how long a session keeps its last photo, so that Detect runs again on it
TITLE = "Deepfake face-image detector"
SEND_FILES = ("From the API, send files, not text: gradio_client's `handle_file(path)`, or over HTTP "
              '{"path": <the path that /gradio_api/upload returned>, "meta": {"_type": "gradio.FileData"}}.')
ERROR_SECONDS = 8  # how long an error stays on screen; switching tabs closes it sooner
CLOSE_TOASTS_JS = "() => document.querySelectorAll('[data-testid=toast-close]').forEach(button => button.click())"
# tables keep whole words: on a narrow screen they scroll sideways instead of breaking names into letters
CSS = """
.model-comparison table { display: block; overflow-x: auto; scrollbar-width: thin; }
.model-comparison th, .model-comparison td { min-width: 8em; }
.model-comparison th, .model-comparison td, .batch-scores th, .batch-scores th * {
  word-break: normal !important; overflow-wrap: normal !important; hyphens: none; }
.batch-scores th, .batch-scores th * { white-space: nowrap !important; }
"""


def _files_only(value: Any) -> bool:
    return isinstance(value, (dict, FileData, ImageData))


class PhotoData(ImageData):
    """An API payload that is not a file arrives as no photo, which the handler answers with how to send one,
    instead of failing Gradio's validation with a generic error."""

    @model_validator(mode="before")
    @classmethod
    def _no_photo_unless_a_file(cls, value: Any) -> Any:
        return value if _files_only(value) else {}


class PhotoFiles(ListFiles):
    """The same for the batch input: anything but a list of files arrives as no files."""

    @model_validator(mode="before")
    @classmethod
    def _no_files_unless_files(cls, value: Any) -> Any:
        return value if isinstance(value, list) and all(map(_files_only, value)) else []


class PhotoInput(gr.Image):
    is_template = True  # drawn by the page as gr.Image
    data_model = PhotoData


def photo_files_input(**kwargs: Any) -> gr.File:
    """A gr.File for several files whose API payload is validated as `PhotoFiles`. A factory, not a subclass: Gradio
    sends the page a component's parameters by reading its class's `__init__` signature."""
    files = gr.File(file_count="multiple", **kwargs)
    files.data_model = PhotoFiles
    return files


def failure(message: str) -> gr.Error:
    """An error toast that says its one sentence and goes."""
    return gr.Error(message, duration=ERROR_SECONDS, print_exception=False)


@contextmanager
def readable_errors() -> Iterator[None]:
    """Known failures become a gr.Error with their sentence; the server keeps serving."""
    try:
        yield
    except (ImageError, UploadError, NoModelError, ModelFolderError) as error:
        raise failure(str(error)) from None


class Handlers:
    """Event handlers bound to one service and its limits."""

    def __init__(self, service: DetectorService, config: SpaceConfig) -> None:
        self.service = service
        self.config = config

    def detect(self, upload: dict[str, Any] | None,
               held: tuple[str, bytes] | None = None) -> tuple[dict[str, Any], bytes, tuple[str, bytes]]:
        """One image (a Gradio file payload) -> the JSON result; the bytes go on to the pictures event, and are held
        with the upload's path in session state (`held`), so that Detect on the same photo again works once the
        uploaded file is deleted."""
        if upload is None:  # the page sends nothing when no photo was added
            raise failure("Add a photo first: upload one, take one with the webcam, or paste one.")
        if not upload.get("path"):  # an API payload that is not a file
            raise failure(SEND_FILES)
        path = upload["path"]
        with readable_errors():
            again = held is not None and held[0] == path and not Path(path).exists()
            data = held[1] if again else take_upload(path, self.config.max_upload_bytes)
            return self.service.detect(data, upload.get("orig_name") or Path(path).name), data, (path, data)

    def pictures(self, data: bytes | None, result: dict[str, Any]) -> list[Any]:
        """Verdict text, face boxes, each model's label and its Grad-CAM/spectrum pictures; clears the state."""
        if data is None:
            raise failure("The photo is no longer held on the server; run Detect again.")
        with readable_errors():
            image = load_image(data)
            explanations = self.service.explain(image, self.config.explained_regions)
        cards = [render.model_verdict_markdown(d.name, result["models"][d.name], d.name == result["headline"])
                 for d in self.service.detectors]
        views = [render.explanations_html(explanations[d.name]) for d in self.service.detectors]
        return [render.verdict_markdown(result), render.faces_html(image, result), *cards, *views, None]

    def clear_results(self) -> list[Any]:
        """Empty verdict, pictures, JSON and model cards, so that no result of a previous photo stays on screen."""
        models = len(self.service.detectors)
        return ["", "", None, *[""] * models, *[""] * models]

    def detect_batch(self, uploads: list[dict[str, Any]] | None,
                     progress: gr.Progress = gr.Progress(),  # noqa: B008 (Gradio's documented way to report progress)
                     ) -> tuple[pd.DataFrame, str]:
        """Many images or zips (Gradio file payloads) -> one row per face, and the same table as a CSV file."""
        if uploads is None:  # the page sends nothing when no file was chosen
            raise failure("Choose some images or a zip of images first.")
        paths = [upload["path"] for upload in uploads if upload.get("path")]
        if not paths:  # an API payload that is not a list of files
            raise failure(SEND_FILES)
        with readable_errors():
            images = take_batch(paths, self.config.max_batch_files, self.config.max_upload_bytes,
                                self.config.max_batch_bytes)
            progress((0, len(images)), desc="Scoring", unit="images")
            columns, rows = self.service.detect_batch(
                images, lambda done, total: progress((done, total), desc="Scoring", unit="images"))
        table = pd.DataFrame(rows, columns=columns)
        csv_path = save_bytes_to_cache(table.to_csv(index=False).encode(), "deepfake_scores.csv", get_upload_folder())
        return table, csv_path

    def models(self) -> dict:
        """Metadata of the models this server runs: thresholds, metrics, training data, terms and cards."""
        return self.service.models()


def _detect_tab(handlers: Handlers) -> dict[str, Any]:
    """Layout of the Detect tab; returns the components the events need."""
    detectors = handlers.service.detectors
    with gr.Row():
        with gr.Column(scale=1):
            image = PhotoInput(label="Face photo", type="filepath", sources=["upload", "webcam", "clipboard"],
                             height=360)
            button = gr.Button("Detect", variant="primary")
            examples = sorted(str(p) for p in EXAMPLES_DIR.glob("*.jpg"))
            gr.Examples(examples, inputs=image, label="Examples")
        with gr.Column(scale=1):
            verdict = gr.Markdown()
            faces = gr.HTML()
            with gr.Accordion("API response (JSON)", open=False):
                result = gr.JSON(label="/detect result")
    with gr.Row():
        cards, views = [], []
        for _ in detectors:
            with gr.Column(min_width=240):
                cards.append(gr.Markdown(elem_classes=["model-verdict"]))
                views.append(gr.HTML())
    return {"image": image, "button": button, "verdict": verdict, "faces": faces, "result": result,
            "cards": cards, "views": views}


def _batch_tab(config: SpaceConfig, columns: list[str]) -> dict[str, Any]:
    gr.Markdown(f"Up to {config.max_batch_files} images, as files or zip archives "
                f"(each upload up to {config.max_upload_bytes // 2**20} MB). One row per face. Uploads are deleted "
                "from the server once read.")
    files = photo_files_input(label="Images or zips", file_types=["image", ".zip"], type="filepath",
                              elem_id="batch-files")
    button = gr.Button("Score all", variant="primary")
    table = gr.Dataframe(headers=columns, label="Scores (probability that the face is fake)", interactive=False,
                         elem_classes=["batch-scores"])
    csv = gr.File(label="CSV download", interactive=False, elem_id="batch-csv")
    return {"files": files, "button": button, "table": table, "csv": csv}


def _models_tab(service: DetectorService) -> gr.Markdown | None:
    """Layout of the Models tab; returns the comparison table, which is refreshed whenever the tab opens."""
    metadata = service.models()
    if not metadata["models"]:
        gr.Markdown("No model is installed.")
        return None
    if metadata["headline"] == "ensemble":
        gr.Markdown(f"The headline verdict is the models' mean P(fake), face by face, called fake at or above "
                    f"**{metadata['ensemble']['threshold']:.3f}**.")
    elif len(metadata["models"]) > 1:
        gr.Markdown(f"The headline verdict is **{metadata['headline']}**'s; every model's own verdict, at its own "
                    "threshold, is shown beside it.")
    comparison = gr.Markdown(render.comparison_markdown(metadata["models"]), elem_classes=["model-comparison"])
    gr.Markdown("On a narrow screen the table scrolls sideways. Speed is this server's milliseconds per face, face "
                "search included. Test figures come from each model's own test report, on the test split of the data "
                "it was trained with: models trained on different data or splits are not comparable row by row (the "
                "README compares them on images neither saw). The left-out group is the worst of its recipe's "
                "leave-one-out runs (a generator family or real source kept out of training). Each card below gives "
                "the details.")
    for model in metadata["models"]:
        with gr.Accordion(model["name"], open=False):
            gr.Markdown(render.model_markdown(model, service.plot_files(model["name"])))
    return comparison


def build_demo(service: DetectorService, config: SpaceConfig) -> gr.Blocks:
    """The whole app: layout, events with named API endpoints, and the queue."""
    handlers = Handlers(service, config)
    gr.set_static_paths([EXAMPLES_DIR])
    age = config.temp_file_seconds
    with gr.Blocks(title=TITLE, delete_cache=(age, age)) as demo:
        gr.Markdown(f"# {TITLE}\nChecks whether a photo of a face was made by a generator. "
                    "See **About** for what it can and cannot tell.")
        if service.notices():
            gr.Markdown(render.notices_markdown(service.notices()))
        image_bytes = gr.State(time_to_live=IMAGE_STATE_SECONDS)
        held_photo = gr.State(time_to_live=HELD_PHOTO_SECONDS)
        with gr.Tab("Detect") as detect_tab:
            detect = _detect_tab(handlers)
        with gr.Tab("Batch") as batch_tab:
            batch = _batch_tab(config, service.batch_columns)
        with gr.Tab("Models") as models_tab:
            comparison = _models_tab(service)
        with gr.Tab("About") as about_tab:
            gr.Markdown(ABOUT_FILE.read_text())

        for tab in (detect_tab, batch_tab, models_tab, about_tab):  # an error toast belongs to the tab it came from
            tab.select(None, js=CLOSE_TOASTS_JS, api_visibility="private", queue=False)
        if comparison is not None:
            models_tab.select(lambda: render.comparison_markdown(service.models()["models"]), None, comparison,
                              api_visibility="private", queue=False)

        detect["image"].change(
            handlers.clear_results, None,
            [detect["verdict"], detect["faces"], detect["result"], *detect["cards"], *detect["views"]],
            api_visibility="private", queue=False,
        )
        detect["button"].click(
            handlers.detect, [detect["image"], held_photo], [detect["result"], image_bytes, held_photo],
            api_name="detect", preprocess=False,
        ).success(
            handlers.pictures, [image_bytes, detect["result"]],
            [detect["verdict"], detect["faces"], *detect["cards"], *detect["views"], image_bytes],
            api_visibility="private", concurrency_limit=1, concurrency_id="pictures",
        )
        batch["button"].click(
            handlers.detect_batch, batch["files"], [batch["table"], batch["csv"]], api_name="detect_batch",
            preprocess=False, concurrency_limit=1, concurrency_id="batch",
        ).success(lambda: None, None, batch["files"], api_visibility="private", queue=False)  # uploads are gone
        gr.api(handlers.models, api_name="models")
    demo.queue(max_size=config.queue_size, default_concurrency_limit=config.concurrency)
    return demo
