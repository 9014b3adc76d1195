#!/usr/bin/env python3
"""Export a trained BMViT for deployment: ONNX or TorchScript, clip in, triplets (boxes, p(actor), p(class)) out.

    python tools/export_model.py --cfg configs/SYNTH/BMViT_demo.yaml --format onnx|torchscript [--output PATH]
        [--batch-size B] [KEY VALUE ...]

Loads the trained checkpoint (TEST.CHECKPOINT_FILE_PATH, else the newest in OUTPUT_DIR; none: the tool stops),
exports `slowfast_bmvit.engine.export.InferenceForm` for clips of DATA.NUM_FRAMES x TEST_CROP_SIZE^2 (dynamic batch),
writes PATH (default OUTPUT_DIR/export/bmvit.onnx or bmvit.torchscript.pt) and PATH.json (input normalisation,
output layout, post-processing settings), then runs the file on a random clip and prints the largest difference
from the eager model per output (ONNX: with onnxruntime, when installed).
"""

import logging
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from slowfast_bmvit.config import ConfigError  # noqa: E402
from slowfast_bmvit.utils.cli import load_job_config, parse_args  # noqa: E402

DEFAULT_NAMES = {"onnx": "bmvit.onnx", "torchscript": "bmvit.torchscript.pt"}


def _add_arguments(parser) -> None:
    parser.add_argument("--format", required=True, choices=("onnx", "torchscript"), help="file format")
    parser.add_argument("--output", default=None, metavar="PATH", help="the exported file (default: "
                        "OUTPUT_DIR/export/bmvit.onnx or bmvit.torchscript.pt)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch of the example clip used to export and check")


def main(argv=None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args("Export a trained BMViT to ONNX or TorchScript.", argv, _add_arguments,
                      single_config_tool="export_model.py")

    import importlib.util

    from slowfast_bmvit.engine.export import (InferenceForm, compare_with_eager, example_clip, export_onnx,
                                              export_torchscript, interface_description, onnx_export_unavailable,
                                              write_interface)
    from slowfast_bmvit.engine.trained_checkpoint import load_trained_checkpoint
    from slowfast_bmvit.models import build_model
    from slowfast_bmvit.models.checkpoint_loading import CheckpointError

    try:
        # Exported on the CPU whatever NUM_GPUS says (the files run anywhere): no CUDA devices needed.
        cfg = load_job_config(args, args.cfg_files[0], needs_devices=False)
        cfg.NUM_GPUS = 0
        model = build_model(cfg).eval()
        if getattr(model, "uses_input_boxes", False) or not hasattr(model, "token_grid"):
            raise ConfigError(f"MODEL.MODEL_NAME: {cfg.MODEL.MODEL_NAME} is not a set-prediction detector; "
                              f"export_model.py exports BMViT (clip in, triplets out)")
        checkpoint = load_trained_checkpoint(cfg, model)
    except (ConfigError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2)
    unavailable = onnx_export_unavailable() if args.format == "onnx" else None
    if unavailable:
        raise SystemExit(f"error: {unavailable}")

    form = InferenceForm.from_cfg(model, cfg)
    clip = example_clip(cfg, args.batch_size)
    path = args.output or os.path.join(cfg.OUTPUT_DIR, "export", DEFAULT_NAMES[args.format])
    exporter = export_onnx if args.format == "onnx" else export_torchscript
    exporter(form, clip, path)
    description = write_interface(path, interface_description(cfg, form, clip, args.format, checkpoint))
    if args.format == "onnx" and importlib.util.find_spec("onnxruntime") is None:
        print(f"wrote {path} and {description} (not checked: onnxruntime is not installed)")
        return
    check = compare_with_eager(form, path, args.format, example_clip(cfg, args.batch_size, seed=1))
    print(f"wrote {path} and {description}; max |exported - eager| on a random clip: {check.line()}")


if __name__ == "__main__":
    main()
