"""YOLO-World's text encoder (vision_trainer/ultralytics/world.py): a transformers CLIP folder
embeds the prompts in place of ultralytics' GitHub `clip`, which is never imported; a missing or
pickled encoder is refused naming TEXT_ENCODER_WEIGHT_URL."""

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def world_fixtures():
    """The integration test's fixture script (test/integration/world-fixtures.py), run in this process."""
    spec = importlib.util.spec_from_file_location("world_fixtures", ROOT / "test" / "integration" / "world-fixtures.py")
    fixtures = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fixtures)
    return fixtures


@pytest.fixture(scope="module")
def encoder_folder(tmp_path_factory) -> Path:
    """The integration test's tiny CLIP folder."""
    folder = tmp_path_factory.mktemp("clip-text")
    world_fixtures().text_encoder(str(folder))
    return folder


def test_names_map_to_ultralytics_configurations():
    from vision_trainer.ultralytics import world

    assert world.config_name("yolo_world_v2_s") == "yolov8s-worldv2"
    assert world.config_name("yolo_world_v2_m") == "yolov8m-worldv2"
    assert world.is_world("yolo_world_v2_n") and not world.is_world("yolo11n") and not world.is_world("yolo_world_v2_q")


def test_set_classes_embeds_with_the_folder_and_never_imports_ultralytics_clip(encoder_folder, monkeypatch):
    import torch
    from ultralytics.nn.tasks import WorldModel
    from ultralytics.utils import checks
    from vision_trainer.ultralytics import world

    # Were ultralytics' text_model imported after all, its missing `clip` must not become a pip install here.
    monkeypatch.setattr(checks, "AUTOINSTALL", False)
    assert "ultralytics.nn.text_model" not in sys.modules  # nothing before this test imported it either
    world.use_text_encoder(str(encoder_folder))
    names = ["circle", "square", "red triangle"]
    model = WorldModel("yolov8n-worldv2.yaml", nc=3, verbose=False).eval()
    model.set_classes(names)
    enc = world.ClipTextEncoder(str(encoder_folder), torch.device("cpu"))
    expected = enc.encode_text(*enc.tokenize(names))
    out = model.predict(torch.zeros(1, 3, 32, 32))
    assert list(model.txt_feats.shape) == [1, 3, 512]
    assert float((model.txt_feats[0] - expected).abs().max()) < 1e-6
    assert torch.allclose(model.txt_feats[0].norm(dim=-1), torch.ones(3), atol=1e-5)
    assert (out[0] if isinstance(out, (list, tuple)) else out).shape[1] == 4 + 3  # boxes + one score per prompt
    assert model.clip_model is None  # the encoder is not kept on the model (it would be pickled into checkpoints)
    assert [m for m in ("ultralytics.nn.text_model", "clip") if m in sys.modules] == []


def test_without_an_encoder_the_error_names_the_variable():
    from vision_trainer.ultralytics import world

    world.use_text_encoder(None)
    with pytest.raises(ValueError, match="set TEXT_ENCODER_WEIGHT_URL"):
        world._encoder("cpu")


def test_pickled_or_foreign_folders_are_refused(encoder_folder, tmp_path):
    import torch
    from safetensors.torch import load_file
    from vision_trainer.ultralytics import world

    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for f in encoder_folder.iterdir():
        if f.name != "model.safetensors":
            (pickled / f.name).write_bytes(f.read_bytes())
    torch.save(load_file(encoder_folder / "model.safetensors"), pickled / "pytorch_model.bin")
    with pytest.raises(ValueError, match="TEXT_ENCODER_WEIGHT_URL is not a zip of a transformers CLIP save_pretrained folder with safetensors weights"):
        world.ClipTextEncoder(str(pickled), torch.device("cpu"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"TEXT_ENCODER_WEIGHT_URL: no config\.json"):
        world.ClipTextEncoder(str(empty), torch.device("cpu"))


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_release_file_loads_through_the_allow_list_and_a_payload_beside_it_is_refused(tmp_path):
    """A YOLO-World release file (a pickled WorldModel, as yolov8s-worldv2.pt is; written by
    ultralytics' own save path) is admitted by the weights_only loading with ultralytics' class
    allow-list, with no new entry of ours; the same model with one hostile value beside it is
    refused naming the global, and the payload never runs."""
    import torch
    from ultralytics.nn.tasks import WorldModel, load_checkpoint
    from vision_trainer.safe_load import UnsafeArtifactError, names_ultralytics_model, pickle_globals

    assert getattr(torch.load, "vision_trainer_guarded", False)
    release = tmp_path / "yolov8n-worldv2.pt"
    made = world_fixtures().release(str(release))
    names = pickle_globals(release)
    assert {"ultralytics.nn.tasks.WorldModel", "ultralytics.nn.modules.head.WorldDetect", "ultralytics.nn.modules.block.C2fAttn"} <= names
    assert names_ultralytics_model(names) and made["classes"] == 80
    model, ckpt = load_checkpoint(str(release))
    assert isinstance(model, WorldModel) and list(model.txt_feats.shape) == [1, 80, 512]
    assert len(model.names) == 80 and (model.names[0], model.names[79]) == ("person", "toothbrush")
    assert ckpt["epoch"] == -1 and ckpt["optimizer"] is None and ckpt["train_args"]  # a finished run's release layout

    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil-world.pt"
    torch.save({**ckpt, "model": model, "optimizer": Payload(marker)}, evil)
    with pytest.raises(UnsafeArtifactError) as refused:
        load_checkpoint(str(evil))
    assert refused.value.globals == ["posix.system"]
    assert not marker.exists()
