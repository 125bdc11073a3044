"""Names shared by model folders, data, training and the Space: the two labels and the files of a model folder."""
from __future__ import annotations

LABEL_NAMES = ["real", "fake"]
FAKE_INDEX = LABEL_NAMES.index("fake")
REAL_INDEX = LABEL_NAMES.index("real")
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
BACKBONE_NAME = "backbone.safetensors"  # a frozen backbone's weights beside its head (`push --with-backbone`)
SEEN_IMAGES_NAME = "seen_images.json"  # paths of the images a model trained or was calibrated on
TRAIN_CONFIG_NAME = "train_config.json"  # the resolved training config, beside the model
EVALUATION_NAME = "evaluation.json"  # the test-split report of `training.evaluate`
LEAVE_ONE_OUT_NAME = "leave_one_out.json"  # its recipe's left-out generators and sources (`bench.results_table`)
PICKLE_NAMES = ("pytorch_model.bin", "model.pth", "model.pt", "open_clip_pytorch_model.bin")  # refused, never loaded
