"""tools/export_model.py: the demo model exported to TorchScript and ONNX gives the eager outputs (acceptance: 1e-4).

The demo config's architecture (8 x 112 px, 6 blocks, flip-averaged test) with random weights saved as a trained
checkpoint; onnxruntime runs the ONNX file on the CPU.
"""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from slowfast_bmvit.config import assert_and_infer_cfg, load_config
from slowfast_bmvit.engine.export import (InferenceForm, as_model_outputs, example_clip, onnx_export_unavailable,
                                          run_exported)
from slowfast_bmvit.models import build_model
from slowfast_bmvit.models.flip_average import flip_averaged_outputs
from slowfast_bmvit.models.postprocess import postprocess_detections

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tools"))
import export_model  # noqa: E402

DEMO_CFG = str(REPO / "configs" / "SYNTH" / "BMViT_demo.yaml")


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    cfg = assert_and_infer_cfg(load_config(DEMO_CFG, ["OUTPUT_DIR", str(folder)]))
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    (folder / "checkpoints").mkdir()
    torch.save({"epoch": 9, "model_state": model.state_dict(), "cfg": cfg.dump()},
               folder / "checkpoints" / "checkpoint_epoch_00010.pyth")
    return cfg, model, folder


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_exported_demo_model_matches_eager(demo_run, fmt, capsys):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason="onnxruntime (requirements-dev.txt) runs the ONNX file")
        reason = onnx_export_unavailable()
        if reason:
            pytest.skip(reason)
    cfg, model, folder = demo_run
    path = folder / f"bmvit.{fmt}"
    export_model.main(["--cfg", DEMO_CFG, "--format", fmt, "--output", str(path), "--batch-size", "2",
                       "OUTPUT_DIR", str(folder)])
    assert capsys.readouterr().out.startswith(f"wrote {path}")
    assert sorted(p.name for p in folder.glob(f"bmvit.{fmt}*")) == [f"bmvit.{fmt}", f"bmvit.{fmt}.json"]  # one file
    form = InferenceForm.from_cfg(model, cfg)
    assert form.flip_average  # the demo config tests flip-averaged: the file holds both views
    for batch in (1, 3):  # the batch axis is dynamic
        clip = example_clip(cfg, batch, seed=5)
        with torch.no_grad():
            eager = [output.numpy() for output in form(clip)]
        exported = run_exported(path, fmt, clip)
        assert [a.shape for a in exported] == [(batch, 49, 4), (batch, 49), (batch, 49, 80)]
        for a, b in zip(eager, exported):
            np.testing.assert_allclose(b, a, atol=1e-4, rtol=0)
        # The eager form is the test's own reading of the model: flip_averaged_outputs' probabilities.
        with torch.no_grad():
            test_outputs = flip_averaged_outputs(model, clip)
        np.testing.assert_allclose(eager[1], test_outputs["pred_actor"].softmax(-1)[..., 1].numpy(), atol=2e-6)
        np.testing.assert_allclose(eager[2], test_outputs["pred_classes"].sigmoid().numpy(), atol=2e-6)
        # Post-processing reads the exported arrays as it reads the model's outputs.
        from_file = postprocess_detections(as_model_outputs(*map(torch.from_numpy, exported)), None, 0.3)
        from_test = postprocess_detections(test_outputs, None, 0.3)
        for x, y in zip(from_file, from_test):
            assert x["token_index"].tolist() == y["token_index"].tolist()
            np.testing.assert_allclose(x["class_scores"].numpy(), y["class_scores"].numpy(), atol=1e-4)
    description = json.loads(Path(f"{path}.json").read_text())
    assert description["input"]["shape"] == ["batch", 3, 8, 112, 112]
    assert description["outputs"]["token_grid"] == [1, 7, 7] and description["postprocess"]["actor_thresh"] == 0.05


def test_export_refuses_an_untrained_model(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        export_model.main(["--cfg", DEMO_CFG, "--format", "torchscript", "OUTPUT_DIR", str(tmp_path)])
    assert stop.value.code == 2
    assert "no trained checkpoint" in capsys.readouterr().err


def test_export_runs_on_the_cpu_whatever_num_gpus_says(tmp_path, capsys):
    """A GPU config (the AVA configs set NUM_GPUS 8) exports on a machine without those GPUs: the export runs on
    the CPU, so the tool stops at the missing checkpoint, not at the device check."""
    with pytest.raises(SystemExit) as stop:
        export_model.main(["--cfg", DEMO_CFG, "--format", "torchscript", "NUM_GPUS", "64", "TRAIN.BATCH_SIZE", "64",
                           "TEST.BATCH_SIZE", "64", "OUTPUT_DIR", str(tmp_path)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "no trained checkpoint" in err and "NUM_GPUS" not in err, err


def test_onnx_export_refuses_an_exporter_without_the_needed_keywords(demo_run, monkeypatch, capsys):
    """A torch whose torch.onnx.export predates dynamic_shapes / external_data (2.4 has only dynamo) stops the
    export with one line naming them, before anything is written."""
    pytest.importorskip("onnxscript", reason="onnxscript (requirements-dev.txt) is what ONNX export needs first")
    _, _, folder = demo_run

    def old_export(model, args, f, export_params=True, verbose=False, input_names=None, output_names=None,
                   dynamo=False):
        raise AssertionError("must not be called")

    monkeypatch.setattr(torch.onnx, "export", old_export)
    path = folder / "refused.onnx"
    with pytest.raises(SystemExit) as stop:
        export_model.main(["--cfg", DEMO_CFG, "--format", "onnx", "--output", str(path), "OUTPUT_DIR", str(folder)])
    message = str(stop.value.code)
    assert message.startswith("error: ONNX export needs a torch.onnx.export that takes dynamic_shapes, external_data")
    assert "--format torchscript" in message and "\n" not in message
    assert not path.exists()
