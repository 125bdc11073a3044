"""Deepfake face-image detection: model folders in Hub layout and the one inference path.

    >>> from hub_utils import load_detector
    >>> detector = load_detector("models/effnet-lite0-resize192")   # or "owner/name@revision" on the Hub
    >>> detector.predict(["photo.jpg"])[0].faces[0].verdict
"""
from .constants import LABEL_NAMES
from .detector import Detector, FaceScore, ImageScore, face_crops, load_detector
from .images import ImageError, load_image
from .model_folder import DeepfakeConfig, ModelFolderError

__all__ = ["Detector", "FaceScore", "ImageScore", "face_crops", "load_detector", "ImageError", "load_image",
           "LABEL_NAMES", "DeepfakeConfig", "ModelFolderError"]
