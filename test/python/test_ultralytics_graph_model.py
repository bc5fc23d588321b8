"""INFERENCE_MODEL_PATH for ultralytics (vision_trainer.ultralytics.graph_model): an export job's
ONNX with NMS and the normalisation built in, a fixed batch of 1 and a fixed size, predicts through
ultralytics' predictor as the checkpoint does, on ONNX Runtime and OpenVINO; a graph of other
weights (same classes, same layout) is refused by its scores; an NMS that is not the job's, or
metadata that is not the checkpoint's, is refused before anything runs. (The integration test
runs a trained checkpoint's export through the CLI; here the checkpoints are untrained, so the
export is the real exporter at small cost.)"""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")

SIZE = 64
SETTINGS = {"imgsz": SIZE, "iou": 0.45, "conf": 0.001, "max_det": 300}
NMS = {"iou_threshold": 0.45, "min_confidence": 0.0, "max_detections": 300, "class_aware": True}
# A dataset's ids, neither contiguous nor in index order: the graph's rows name these.
CLASS_IDS = [7, 3, 11]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(checkpoint, the export job's model.onnx, its GraphModel): yolo11n, untrained, 3 classes."""
    from ultralytics import YOLO
    from vision_trainer.ultralytics import export
    from vision_trainer.ultralytics.train import configure_offline

    configure_offline()
    folder = tmp_path_factory.mktemp("graph-model")
    torch.manual_seed(0)
    from ultralytics.nn.tasks import DetectionModel

    yolo = YOLO("yolo11n.yaml")
    yolo.model = DetectionModel("yolo11n.yaml", nc=3, verbose=False)
    yolo.model.names = {0: "circle", 1: "square", 2: "triangle"}
    # Untrained, every score sits at the head's prior (~1e-4, below any threshold); a trained
    # model's sit around 0.1 on random pixels, which the class branch's biases give it here.
    with torch.no_grad():
        for conv in _class_convs(yolo):
            conv.weight.normal_(0.0, 0.05)
            conv.bias.copy_(torch.tensor([-2.0, -2.5, -3.0]))
    from vision_trainer.common.class_ids import ULTRALYTICS_ATTRIBUTE

    setattr(yolo.model, ULTRALYTICS_ATTRIBUTE, CLASS_IDS)
    checkpoint = folder / "best.pt"
    yolo.save(str(checkpoint))
    params = {"checkpoint": str(checkpoint), "format": "onnx", "input_size": [SIZE, SIZE], "batch": 1, "device": "cpu", "opset": 17}
    params |= {"simplify": False, "quantize": None, "quantize_static": False, "calibration": [], "calibration_shape": [1, 3, SIZE, SIZE]}
    params |= {"nms": {k: NMS[k] for k in ("iou_threshold", "min_confidence", "max_detections")}, "optimization_level": 1}
    params |= {"embed_preprocessing": {"method": "divide", "mean": [0.0, 0.0, 0.0], "std": [255.0, 255.0, 255.0]}, "out_dir": str(folder / "export")}
    answer = json.loads(export.export(params))
    assert "ok" in answer, answer
    graph_model = {
        "path": answer["ok"]["path"],
        "format": "onnx",
        "uri": "s3://bucket/export-jobs/exp-1/model.onnx",
        "framework": "ultralytics",
        "task_type": "object_detection",
        "class_names": ["circle", "square", "triangle"],
        "class_ids": CLASS_IDS,
        "input_size": [SIZE, SIZE],
        "embedded_preprocessing": True,
        "embedded_softmax": False,
        "nms": NMS,
        "box_units": "pixels",
        "batch": 1,
        "quantized": False,
    }
    return checkpoint, graph_model


def _class_convs(yolo) -> list:
    """The Detect head's last convolution per scale in its class branch (one output per class)."""
    return [branch[-1] for branch in yolo.model.model[-1].cv3]


def _meta(yolo) -> dict:
    from vision_trainer.common.class_ids import ClassIds

    names = {int(k): str(v) for k, v in yolo.names.items()}
    return {"names": names, "task": "detect", "stride": 32, "kpt_shape": None, "class_ids": ClassIds.of_ultralytics(yolo.model, list(names.values())).ids}


def _images(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(5)
    # Not square: the fixed-size graph letterboxes to 64x64, as the checkpoint's rectangle does here.
    return [rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8) for _ in range(count)]


@pytest.mark.parametrize(("backend", "export_format"), [("onnx", "onnx"), ("openvino", "onnx"), ("openvino", "openvino")])
def test_the_export_predicts_as_the_checkpoint_does(exported, tmp_path, backend, export_format):
    from ultralytics import YOLO
    from vision_trainer.ultralytics.graph_model import open_exported

    checkpoint, graph_model = exported
    if export_format == "openvino":
        import openvino as ov

        # An export job's model.openvino, as the job extracts it: an IR folder of any name.
        xml = tmp_path / "exported" / "model.openvino" / "best.xml"
        xml.parent.mkdir(parents=True)
        ov.save_model(ov.Core().read_model(graph_model["path"]), str(xml), compress_to_fp16=False)
        graph_model = {**graph_model, "format": "openvino", "path": str(xml)}
    yolo = YOLO(str(checkpoint))
    model, predictor, ran, seconds = open_exported(graph_model, backend, yolo, _meta(yolo), SETTINGS, str(tmp_path), "fp32")
    assert ran == "fp32" and seconds > 0
    # Three images through a graph of batch 1: ultralytics splits the batch.
    images = _images(3)
    expected = yolo.predict(images, device="cpu", batch=3, verbose=False, save=False, **SETTINGS)
    got = model.predict(images, device="cpu", batch=3, verbose=False, save=False, predictor=predictor, **SETTINGS)
    for e, g in zip(expected, got, strict=True):
        assert len(e.boxes) > 0
        # Model indices, not the dataset ids the graph's rows carry.
        assert sorted(g.boxes.cls.tolist()) == sorted(e.boxes.cls.tolist())
        assert set(g.boxes.cls.int().tolist()) <= {0, 1, 2}
        order_e, order_g = e.boxes.conf.argsort(descending=True), g.boxes.conf.argsort(descending=True)
        np.testing.assert_allclose(g.boxes.conf[order_g].numpy(), e.boxes.conf[order_e].numpy(), atol=1e-4)
        np.testing.assert_allclose(g.boxes.xyxy[order_g].numpy(), e.boxes.xyxy[order_e].numpy(), atol=0.05)
        assert g.names == e.names


def test_a_graph_of_other_weights_is_refused_by_its_scores(exported, tmp_path):
    from ultralytics import YOLO
    from vision_trainer.common.graph_runtime import GraphModelMismatchError
    from vision_trainer.ultralytics.graph_model import open_exported

    checkpoint, graph_model = exported
    other = YOLO(str(checkpoint))
    with torch.no_grad():
        # Every weight moved by 5% of its layer's spread, as another run of the same model would move them.
        generator = torch.Generator().manual_seed(1)
        for weight in other.model.parameters():
            if weight.numel() > 1:
                weight.add_(torch.randn(weight.shape, generator=generator).to(weight.dtype) * 0.05 * weight.float().std().to(weight.dtype))
    with pytest.raises(GraphModelMismatchError, match=r"its scores differ from the checkpoint's by up to"):
        open_exported(graph_model, "onnx", other, _meta(other), SETTINGS, str(tmp_path), "fp32")


def test_metadata_or_an_nms_that_is_not_the_jobs_is_refused_before_anything_runs(exported, tmp_path):
    from ultralytics import YOLO
    from vision_trainer.common.graph_runtime import GraphModelMismatchError
    from vision_trainer.ultralytics.graph_model import metadata_problems, nms_problems, open_exported

    checkpoint, graph_model = exported
    names = ["circle", "square", "triangle"]
    assert metadata_problems(graph_model, names, CLASS_IDS, SIZE) == []
    assert "not the checkpoint's" in metadata_problems({**graph_model, "class_names": ["a", "b", "c"]}, names, CLASS_IDS, SIZE)[0]
    assert "dataset class ids (7, 3, 11) are not the checkpoint's (0, 1, 2)" in metadata_problems(graph_model, names, [0, 1, 2], SIZE)[0]
    assert (
        "takes 32x32 images, this job predicts at 64x64 (IMAGE_SIZE): set IMAGE_SIZE=32"
        in metadata_problems({**graph_model, "input_size": [32, 32]}, names, CLASS_IDS, SIZE)[0]
    )
    assert "exported from a timm model" in metadata_problems({**graph_model, "framework": "timm"}, names, CLASS_IDS, SIZE)[0]
    assert nms_problems(None, 0.7, 0.5, 300) == []
    assert nms_problems(NMS, 0.45, 0.001, 300) == []
    assert "IOU_THRESHOLD=0.45" in nms_problems(NMS, 0.6, 0.001, 300)[0]
    assert "drops scores at or below 0.25" in nms_problems({**NMS, "min_confidence": 0.25}, 0.45, 0.001, 300)[0]
    assert "at most 100 detections" in nms_problems({**NMS, "max_detections": 100}, 0.45, 0.001, 300)[0]
    assert "class-agnostic" in nms_problems({**NMS, "class_aware": False}, 0.45, 0.001, 300)[0]
    yolo = YOLO(str(checkpoint))
    with pytest.raises(GraphModelMismatchError, match=r"IOU_THRESHOLD is 0.6.*INCLUDE_POSTPROCESSING=false"):
        open_exported(graph_model, "onnx", yolo, _meta(yolo), {**SETTINGS, "iou": 0.6}, str(tmp_path), "fp32")


def test_the_nms_rows_dataset_ids_map_back_to_the_models_outputs():
    """A dynamically quantized graph carries its rows through uint8 (3.02 for 3): the ids are
    rounded; an id metadata.json does not list means the graph is not what it says."""
    from types import SimpleNamespace

    from vision_trainer.common.graph_runtime import GraphModelMismatchError
    from vision_trainer.ultralytics.graph_model import _adapt

    rows = np.zeros((1, 300, 6), dtype=np.float32)
    rows[0, 0] = [1, 2, 10, 12, 0.9, 3.0196]
    rows[0, 1] = [5, 5, 20, 20, 0.5, 6.988]
    rows[0, 2] = [5, 5, 20, 20, 0.2, 11.0]
    fed = {}

    def run(names, feed):
        fed.update(feed)
        return [rows]

    session = SimpleNamespace(get_inputs=lambda: [SimpleNamespace(name="images")], run=run)
    auto = SimpleNamespace(backend=SimpleNamespace(session=session, output_names=["output0"]))
    graph_model = {"uri": "s3://b/m.onnx", "input_size": [SIZE, SIZE], "batch": 1, "nms": NMS, "class_ids": CLASS_IDS, "embedded_preprocessing": True}
    meta = {"names": {0: "circle", 1: "square", 2: "triangle"}, "task": "detect", "stride": 32, "kpt_shape": None}
    _adapt(auto, graph_model, meta, "onnx")
    assert auto.backend.end2end is True and auto.backend.batch == 1 and auto.backend.names[1] == "square"
    image = torch.full((1, 3, SIZE, SIZE), 114 / 255.0)
    got = auto.backend.forward(image)[0]
    # The graph was fed the letterboxed pixels themselves: uint8, NHWC.
    assert fed["images"].dtype == np.uint8 and fed["images"].shape == (1, SIZE, SIZE, 3) and int(fed["images"].max()) == 114
    assert got[0, :3, 5].tolist() == [1.0, 0.0, 2.0]  # dataset ids 3, 7, 11 -> outputs 1, 0, 2
    rows[0, 2, 5] = 5.0
    with pytest.raises(GraphModelMismatchError, match=r"names class ids \[5.0\], which are not metadata.json's"):
        auto.backend.forward(image)


def test_in_bfloat16_on_openvino_the_export_is_still_recognised_as_the_checkpoint(exported, tmp_path):
    """INFERENCE_PRECISION=bf16: what ran is read back (bf16 where the CPU has it), and the
    comparison with the checkpoint allows what bfloat16 costs, not other weights."""
    import openvino as ov
    from ultralytics import YOLO
    from vision_trainer.ultralytics.graph_model import open_exported

    checkpoint, graph_model = exported
    yolo = YOLO(str(checkpoint))
    model, predictor, ran, _ = open_exported(graph_model, "openvino", yolo, _meta(yolo), SETTINGS, str(tmp_path), "bf16")
    assert ran == ("bf16" if "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES") else "fp32")
    got = model.predict(_images(2), device="cpu", batch=2, verbose=False, save=False, predictor=predictor, **SETTINGS)
    assert all(len(r.boxes) > 0 for r in got)
