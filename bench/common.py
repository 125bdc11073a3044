"""What the benchmarks share: the left-out groups and the rows they select, the figures of a table row, the report
files' merging, the scoring of model folders on chosen rows, and the Markdown tables that `bench.results_table`
writes into README.md and docs/ (each benchmark prints its own with the same function).

Benchmarks import this module and library modules only, never each other.
"""
from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import datasets
import numpy as np

from hub_utils.detector import Detector, load_detector
from hub_utils.ensemble import ENSEMBLE_NAME, Ensemble
from hub_utils.faces import FaceFinder
from hub_utils.kinds import FROZEN_HEAD, kind_of
from training.config import TrainConfig
from training.dataset import image_of
from training.deepfake_metrics import compute_metrics
from training.evaluation import score_images
from training.features import FeatureCache
from training.frozen_head import LinearHead, region_tokens
from training.perturb import neutral_reencode
from training.pipeline import build_splits, matches_any

# ----------------------------------------------------------------------------------------------- left-out groups

FAMILIES = {
    "stylegan": ["stylegan", "stylegan2", "stylegan3", "stylegan_family_unverified"],
    "attribute_gans": ["attgan", "stargan", "elegant", "gdwct"],
    "diffusion": ["flux1_pro", "flux1_dev", "flux1_schnell", "sdxl", "dalle3", "stable_diffusion_1_5",
                  "stable_diffusion_2_1", "arc2face"],
}
GENERATOR_PREFIX = "generator="  # a left-out name that names generators rather than a family or a source
# Every diffusion-era generator of ../shared/data/faces (the `diffusion` family's eight among them): latent and pixel
# diffusion, identity-conditioned and LoRA-tuned Stable Diffusion, diffusion face datasets, and the text-to-image
# models of the same era built otherwise (Infinity: bitwise autoregressive; HART: autoregressive with a residual
# diffusion). tests/test_leave_one_out.py holds that every fake generator there is in it or named as older.
DIFFUSION_ERA = [
    "stable_diffusion_1_5", "sd15_deepfakeface", "wplus_adapter_sd15", "facechain_sd15_lora", "arc2face",
    "stable_diffusion_2_1", "sd2_base_txt2img", "sd2_depth2img", "sdxl", "storymaker_sdxl", "flux1", "flux1_pro",
    "flux1_dev", "flux1_schnell", "dalle3", "collaborative_diffusion", "collaborative_diffusion_edit",
    "collaborative_diffusion_freeu", "ilvr_ddpm_ffhq", "dcface_ddpm_uncond", "idiff_face", "pixart_alpha_20step",
    "pixart_alpha_dmd_1step", "pixart_alpha_lcm_2step", "pixart_alpha_lcm_4step", "hunyuanimage_2_1",
    "hunyuandit_controlnet_pose", "kandinsky_2_1", "kandinsky_2_2", "stable_cascade", "deepfloyd_if", "hidream_i1",
    "infinity_2b", "infinity_8b", "hart",
]
# Named left-out groups beside the families, as `--exclude` rules: today's generators, and each real collection
# added on 2026-12-07 (its reals; the test split's fakes complete it).
GROUPS = {
    "sd15_lora_portraits": ["generator=facechain_sd15_lora"],
    "diffusion_era": [f"generator={g}" for g in DIFFUSION_ERA],
    "synthetic_face_datasets": ["generator=dcface_ddpm_uncond", "generator=idiff_face", "generator=digiface_render"],
    "aflw2000": ["generator=aflw2000", "generator=aflw2000_crop224"],
    "video_frames": ["generator=voxceleb2_frame_crop", "generator=video_frame"],
    "celeba_in_the_wild": ["generator=celeba_wild"],
    "tv_stills": ["generator=tv_still_face_crop", "generator=tv_debate_still"],
    "stock_photos": ["generator=stock_photo"],
    "makeup_photos": ["generator=mt_makeup_dataset"],
    "press_photos": ["generator=press_photo", "generator=web_celebrity_photo_aligned"],
    "old_photo_scans": ["generator=scanned_old_photo"],
}
# Names that stand for several groups, one run each.
GROUP_SETS = {"modern_fakes": ["sd15_lora_portraits", "diffusion_era", "synthetic_face_datasets"],
              "new_reals": ["aflw2000", "video_frames", "celeba_in_the_wild", "tv_stills", "stock_photos",
                            "makeup_photos", "press_photos", "old_photo_scans"]}


def exclusion_rules(name: str) -> list[str]:
    """`--exclude` rules for a family name (its generators), a named group (`GROUPS`), `generator=A+B` (those
    generators) or `A+B` (those sources, each with its reals and its fakes)."""
    if name in FAMILIES:
        return [f"generator={g}" for g in FAMILIES[name]]
    if name in GROUPS:
        return GROUPS[name]
    if name.startswith(GENERATOR_PREFIX):
        return [f"generator={g}" for g in name.removeprefix(GENERATOR_PREFIX).split("+")]
    return [f"source={s}" for s in name.split("+")]


def rule_mask(rows: datasets.Dataset, rules: list[str]) -> np.ndarray:
    """Which rows match any `generator=NAME` / `source=NAME` rule (read from those columns; images stay undecoded)."""
    matches = matches_any(rules)
    return np.array([matches({"generator": g, "source": s}) for g, s in zip(rows["generator"], rows["source"])], bool)


def every_row(config: TrainConfig) -> tuple[datasets.Dataset, np.ndarray]:
    """Every usable row of every split, nothing excluded, and the name of each row's split."""
    splits = build_splits(replace(config, exclude=[]))
    names = np.concatenate([np.full(len(splits[name]), name) for name in splits])
    return datasets.concatenate_datasets([splits[name] for name in splits]), names


def held_out_masks(split_names: np.ndarray, labels: np.ndarray, left_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(unseen, seen): every left-out row plus the test split's rows of a class they lack; the test split without
    them."""
    seen = (split_names == "test") & ~left_out
    return left_out | (seen & ~np.isin(labels, labels[left_out])), seen


def masks_for(splits: np.ndarray, labels: np.ndarray, left_out: np.ndarray, threshold_from: np.ndarray
              ) -> dict[str, np.ndarray]:
    """Rows to fit on (neither mask), to choose the threshold on (validation + `threshold_from`), and to score: the
    left-out rows with the test split's class they lack, and the seen test rows (both the test split if nothing is
    out)."""
    unseen, seen = held_out_masks(splits, labels, left_out)
    outside = ~left_out & ~threshold_from
    return {"train": outside & (splits == "train"), "validation": (outside & (splits == "validation")) | threshold_from,
            "unseen": unseen, "seen": seen & ~threshold_from}


# ----------------------------------------------------------------------------------------------- scores and rows


def row_figures(unseen: dict, seen: dict) -> dict:
    """A table row's figures from the metric reports (`compute_metrics`) of the left-out and the seen test images."""
    return {"threshold": unseen["threshold"], "unseen_n_fake": unseen["per_class"]["fake"]["support"],
            "unseen_n_real": unseen["per_class"]["real"]["support"], "unseen_roc_auc": unseen["roc_auc"],
            "unseen_balanced_accuracy": unseen["balanced_accuracy"],
            "unseen_fake_recall": unseen["per_class"]["fake"]["recall"],
            "real_recall": unseen["per_class"]["real"]["recall"],
            "seen_balanced_accuracy": seen["balanced_accuracy"], "seen_roc_auc": seen["roc_auc"]}


def figures_at(scores: np.ndarray, labels: np.ndarray, masks: dict[str, np.ndarray], threshold: float) -> dict:
    """A row's figures (`row_figures`) on the `unseen` and `seen` rows at `threshold`."""
    return row_figures(compute_metrics(labels[masks["unseen"]], scores[masks["unseen"]], threshold),
                       compute_metrics(labels[masks["seen"]], scores[masks["seen"]], threshold))


def frozen_head_scores(detector: Detector, rows: datasets.Dataset, feature_cache: str) -> np.ndarray:
    """A frozen-backbone detector's P(fake) of neutrally re-encoded rows, from cached features exactly as
    `Detector.predict` gives it (tests/test_frozen_backbone.py holds the two equal)."""
    tokens = region_tokens(FeatureCache(detector, feature_cache), rows, neutral_reencode, "scoring")
    return LinearHead.of(detector.model).scores(tokens, detector.deepfake.test_time_flip)


def detector_scores(folders: Sequence[str], rows, wanted: np.ndarray, face_cache: str,
                    feature_cache: str | None = None) -> np.ndarray:
    """P(fake) of trained model folders after neutral re-encoding, scored as `training.evaluate` scores (several
    folders: their ensemble, the mean P(fake) that `hub_utils.ensemble` gives); NaN for other rows (and for any image
    that could not be scored). With `feature_cache`, frozen-backbone folders are scored from cached features."""
    finder = FaceFinder(face_cache)
    detectors = [load_detector(folder, finder) for folder in folders]
    indices = np.flatnonzero(wanted)
    scores = np.full(len(wanted), np.nan)
    if feature_cache and all(kind_of(d.deepfake) == FROZEN_HEAD.name for d in detectors):
        chosen = rows.select(indices)
        scores[indices] = np.mean([frozen_head_scores(d, chosen, feature_cache) for d in detectors], axis=0)
        return scores
    images = [neutral_reencode(image_of(rows[int(i)])) for i in indices]
    scores[indices] = score_images(Ensemble(detectors), images, ", ".join(folders))[ENSEMBLE_NAME]
    return scores


def merge_rows(earlier: list[dict], new_rows: list[dict], key: Callable[[dict], tuple]) -> list[dict]:
    """Earlier rows with reruns (same `key`) replaced in place, then the rows that are new."""
    fresh = {key(row): row for row in new_rows}
    return [fresh.pop(key(row), row) for row in earlier] + list(fresh.values())


def save_rows(path: Path, new_rows: list[dict], key: Callable[[dict], tuple]) -> list[dict]:
    """Merge `new_rows` into the JSON row list at `path` (`merge_rows`), write it back and return every row."""
    rows = merge_rows(json.loads(path.read_text()) if path.is_file() else [], new_rows, key)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rows, indent=2) + "\n")
    return rows


# ----------------------------------------------------------------------------------------------- tables

TABLE_EPOCHS = 2  # the plain recipe's training length; other lengths are variants
METRIC_HEADER = "fakes | reals | AUC | bal. acc | fake recall | real recall | seen-test bal. acc"
VALIDATION_RULE = "validation BA"  # the training's own threshold rule (`best_threshold`)
FROZEN_HEAD_SUMMARY_KEYS = ("mean_auc", "mean_balanced_accuracy", "worst_family_auc", "worst_family_balanced_accuracy",
                            "worst_real_recall", "validation_balanced_accuracy")


def metric_cells(row: dict) -> str:
    """A row's figures on the left-out images and on the seen test images, as the cells under `METRIC_HEADER`."""
    return (f"{row['unseen_n_fake']} | {row['unseen_n_real']} | {row['unseen_roc_auc']:.3f} | "
            f"{row['unseen_balanced_accuracy']:.3f} | {row['unseen_fake_recall']:.3f} | {row['real_recall']:.3f} | "
            f"{row['seen_balanced_accuracy']:.3f}")


def leave_one_out_table(rows: list[dict]) -> str:
    """`bench.leave_one_out`'s rows, one per run."""
    lines = [f"| left out | mode | seed | {METRIC_HEADER} | threshold |", "|" + "---|" * 11]
    for r in rows:
        mode = f"{r['mode']} {r.get('variant', '')}".strip()
        lines.append(f"| {r['left_out']} | {mode} | {r.get('seed', 0)} | {metric_cells(r)} | {r['threshold']:.3f} |")
    return "\n".join(lines)


def feature_probe_table(rows: list[dict]) -> str:
    """`bench.feature_probe`'s rows, one per probe (or fused model) and left-out group."""
    lines = [f"| features | split seed | left out | threshold from | {METRIC_HEADER} | seen-test AUC |",
             "|" + "---|" * 12]
    for r in rows:
        seen_auc = "n/a" if r["seen_roc_auc"] is None else f"{r['seen_roc_auc']:.3f}"  # one class left: no AUC
        lines.append(f"| {r['features']} | {r['split_seed']} | {r['left_out']} | {r['threshold_from']} | "
                     f"{metric_cells(r)} | {seen_auc} |")
    return "\n".join(lines)


def frozen_head_choices_table(records: list[dict]) -> str:
    """One Markdown row per crop and candidate: its `summary`, and the validation split's balanced accuracy under the
    blur and crop perturbations at medium severity (earlier records hold one figure instead: each validation image
    under the perturbation it drew, measured at commit 804356a)."""
    lines = ["| crop | candidate | mean unseen AUC | mean unseen bal. acc. | worst family AUC | "
             "worst family bal. acc. | worst real recall | validation bal. acc. (nothing left out) | "
             "the same, blur medium | the same, crop medium | the same, one drawn perturbation each (804356a) |",
             "|---" * 11 + "|"]
    for record in records:
        summary = record["summary"]
        perturbed = summary.get("validation_perturbed_balanced_accuracy")
        by_name = perturbed if isinstance(perturbed, dict) else {}
        values = [summary.get(key) for key in FROZEN_HEAD_SUMMARY_KEYS] + [
            by_name.get("blur:medium"), by_name.get("crop:medium"), None if by_name else perturbed]
        cells = " | ".join(f"{value:.3f}" if value is not None else "" for value in values)
        lines.append(f"| {record['crop']} | {record['candidate']} | {cells} |")
    return "\n".join(lines)


def operating_points_table(rows: list[dict]) -> str:
    """`bench.operating_points`' rows, one per run and threshold rule."""
    lines = ["| run | threshold rule | threshold | validation real recall | unseen AUC | unseen bal. acc | "
             "unseen fake recall | unseen real recall | seen-test bal. acc |", "|" + "---|" * 9]
    lines += [f"| {r['run']} | {r['rule']} | {r['threshold']:.3f} | {r['validation_real_recall']:.3f} | "
              f"{r['unseen_roc_auc']:.3f} | {r['unseen_balanced_accuracy']:.3f} | {r['unseen_fake_recall']:.3f} | "
              f"{r['real_recall']:.3f} | {r['seen_balanced_accuracy']:.3f} |" for r in rows]
    return "\n".join(lines)


def rule_summary(rows: list[dict]) -> list[dict]:
    """Each threshold rule over every run that has it and the training's rule: mean and minimum unseen balanced
    accuracy, mean seen-test balanced accuracy, and in how many runs it scores the unseen images above the training's
    rule."""
    by_run: dict[str, dict[str, dict]] = defaultdict(dict)
    for row in rows:
        by_run[row["run"]][row["rule"]] = row
    summary = []
    for rule in dict.fromkeys(row["rule"] for row in rows):
        runs = [points for points in by_run.values() if rule in points and VALIDATION_RULE in points]
        unseen = [points[rule]["unseen_balanced_accuracy"] for points in runs]
        summary.append({"rule": rule, "runs": len(runs), "unseen_mean": float(np.mean(unseen)),
                        "unseen_min": float(np.min(unseen)),
                        "seen_mean": float(np.mean([points[rule]["seen_balanced_accuracy"] for points in runs])),
                        "above_validation_rule": sum(points[rule]["unseen_balanced_accuracy"]
                                                     > points[VALIDATION_RULE]["unseen_balanced_accuracy"]
                                                     for points in runs)})
    return summary


def rule_summary_table(summary: list[dict]) -> str:
    """`rule_summary`'s rows, one per threshold rule."""
    lines = ["| threshold rule | runs | mean unseen bal. acc | min unseen bal. acc | mean seen-test bal. acc | "
             f"runs above {VALIDATION_RULE} |", "|" + "---|" * 6]
    lines += [f"| {s['rule']} | {s['runs']} | {s['unseen_mean']:.3f} | {s['unseen_min']:.3f} | {s['seen_mean']:.3f} | "
              f"{s['above_validation_rule']} |" for s in summary]
    return "\n".join(lines)
