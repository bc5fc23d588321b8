"""ultralytics models for inference: prediction, drawing, and what Grad-CAM needs from a YOLO model.

`open_session` loads the checkpoint into this backend and hands it to the shared session
(common/infer_session.py), which drives it and never touches ultralytics itself.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..common.class_ids import ClassIds
from ..common.decode_pool import SEQUENTIAL
from ..common.graph_runtime import (
    GRAPH_BACKENDS,
    backend_info,
    check_device,
    export_or_fall_back,
    export_ultralytics,
    precision_info,
    resolve_backend,
    ultralytics_runtime_settings,
)
from ..common.infer_session import FrameworkMismatchError, lowest_confidence, open_with
from ..common.xai import CamInput
from ..protocol import CheckpointParams, ModelInfo, SessionParams
from ..support import entry
from .export import resolve_export_device
from .graph_model import open_exported
from .train import configure_offline

# At most this many detections per image, as ultralytics' own default.
MAX_DETECTIONS = 300
LETTERBOX_FILL = 114
MISSED_COLOR = (255, 0, 255)  # magenta (BGR): ground truth the model did not find


def prepare_fonts() -> None:
    """ultralytics draws labels with Arial and downloads it when missing; offline, that fails
    (and classification labels are always drawn with a TrueType font). matplotlib ships DejaVu
    Sans, which takes Arial's place in ultralytics' config folder (ultralytics_train.configure_offline)."""
    from matplotlib import font_manager
    from ultralytics.utils import USER_CONFIG_DIR

    source = Path(font_manager.findfont("DejaVu Sans", fallback_to_default=True))
    USER_CONFIG_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = USER_CONFIG_DIR / name
        if not target.exists():
            shutil.copyfile(source, target)


def _first_tensor(output):
    import torch

    while not isinstance(output, torch.Tensor):
        if isinstance(output, (list, tuple)) and output:
            output = output[0]
        elif isinstance(output, dict) and output:
            output = next(iter(output.values()))
        else:
            raise TypeError(f"cannot find the prediction tensor in a {type(output).__name__}")
    return output


def _letterbox(bgr: np.ndarray, size: int) -> tuple[np.ndarray, float, int, int]:
    """Resize keeping the aspect ratio and pad to size x size, as YOLO sees a square input."""
    import cv2

    h, w = bgr.shape[:2]
    ratio = min(size / h, size / w)
    nw, nh = max(1, round(w * ratio)), max(1, round(h * ratio))
    top, left = (size - nh) // 2, (size - nw) // 2
    canvas = np.full((size, size, 3), LETTERBOX_FILL, dtype=np.uint8)
    canvas[top : top + nh, left : left + nw] = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, ratio, top, left


class YoloBoxScoreTarget:
    """What a detection heatmap explains: for each detected box, the class score of the model's best
    candidate for it (the anchor whose decoded box overlaps the detection by IoU > 0.5 and scores
    highest for the detected class), summed. With no detection, the highest class score anywhere:
    what the model came closest to detecting."""

    def __init__(self, boxes_xyxy, classes, num_classes: int, iou_threshold: float = 0.5):
        import torch

        self.boxes = torch.as_tensor(np.asarray(boxes_xyxy, dtype=np.float32).reshape(-1, 4))
        self.classes = [int(c) for c in classes]
        self.nc = num_classes
        self.iou_threshold = iou_threshold

    def __call__(self, output):
        import torch
        from ultralytics.utils.metrics import box_iou
        from ultralytics.utils.ops import xywh2xyxy

        scores = output[4 : 4 + self.nc]  # (nc, anchors)
        if not self.classes:
            return scores.max()
        anchors = xywh2xyxy(output[:4].detach().T)
        iou = box_iou(self.boxes.to(anchors.device), anchors)
        total = torch.zeros((), device=output.device)
        for k, c in enumerate(self.classes):
            near = iou[k] > self.iou_threshold
            candidates = scores[c][near] if bool(near.any()) else scores[c][iou[k].argmax()].reshape(1)
            total = total + candidates.max()
        return total


class UltralyticsBackend:
    # The session replaces it with its pool (DECODE_THREADS).
    decoder = SEQUENTIAL
    framework = "ultralytics"

    def __init__(self, checkpoint: str, params: dict):
        configure_offline()
        prepare_fonts()
        from ultralytics import YOLO

        self.yolo = YOLO(checkpoint)
        self.task = str(self.yolo.task)
        self.names = {int(k): str(v) for k, v in self.yolo.names.items()}
        self.class_ids = ClassIds.of_ultralytics(self.yolo.model, [self.names[i] for i in sorted(self.names)])
        self.imgsz = int(params["image_size"])
        self.iou = float(params["iou_threshold"])
        self.device = None if params.get("device") in (None, "", "auto") else params["device"]
        net = self.yolo.model
        self.kpt_shape = [int(v) for v in getattr(net, "kpt_shape", None) or net.yaml.get("kpt_shape") or []] or None
        ckpt = getattr(self.yolo, "ckpt", None) or {}
        self.train_args = dict(ckpt.get("train_args") or {})
        # INFERENCE_BACKEND=onnx|openvino: the exported graph predicts through ultralytics' own
        # predictor (same letterbox, NMS and result objects); self.yolo stays for Grad-CAM.
        requested = params["inference_backend"]
        precision = params.get("inference_precision") or "fp32"
        ran_precision = "fp32"
        graph_model = params.get("graph_model")
        export_device = resolve_export_device(params.get("device") or "auto")
        self.backend, reason = resolve_backend(
            requested,
            "cuda" if export_device[0].isdigit() else export_device,
            params.get("image_count"),
            given_graph=graph_model["format"] if graph_model is not None else None,
            precision=precision,
        )
        self.predictor_model = self.yolo
        # The predictor class an export job's graph predicts through (graph_model.py); None: ultralytics' own.
        self.predictor_class = None
        export_seconds = None
        if self.backend in GRAPH_BACKENDS and graph_model is not None:
            check_device(self.backend, export_device)
            self.predictor_model, self.predictor_class, ran_precision, _ = open_exported(
                graph_model,
                self.backend,
                self.yolo,
                {
                    "names": self.names,
                    "task": self.task,
                    "stride": int(max(net.stride)) if hasattr(net, "stride") else 32,
                    "kpt_shape": self.kpt_shape,
                    "class_ids": self.class_ids.ids,
                },
                {"imgsz": self.imgsz, "iou": self.iou, "conf": lowest_confidence(params), "max_det": MAX_DETECTIONS},
                params["graph_dir"],
                precision,
            )
            self.device = "cpu"
        elif self.backend in GRAPH_BACKENDS:
            check_device(self.backend, export_device)

            def export():
                graph, seconds = export_ultralytics(checkpoint, self.imgsz, params["graph_dir"], self.backend)
                model = YOLO(str(graph), task=self.task)
                return model, seconds, ultralytics_runtime_settings(model, graph, self.imgsz, self.backend, precision)

            self.backend, reason, exported = export_or_fall_back(requested, self.backend, reason, export)
            if exported is not None:
                self.predictor_model, export_seconds, ran_precision = exported
                self.device = "cpu"
        if self.backend == "pytorch" and self._device_name() == "cpu":
            from ultralytics.utils.torch_utils import select_device

            # ultralytics sizes torch's pool when it selects the device (one thread less than the
            # budget: NUM_THREADS, train.size_threads), at the first predict; done here, the
            # threads results.json reports are the ones predicting.
            select_device("cpu", verbose=False)
        self.backend_info = backend_info(
            self.backend,
            self._device_name(),
            export_seconds,
            bool(params.get("xai")),
            requested,
            reason,
            model_path=graph_model["uri"] if graph_model is not None and self.backend in GRAPH_BACKENDS else None,
            precision=precision_info(precision, self.backend, ran_precision, reason),
        )

    def _device_name(self) -> str:
        if self.backend in GRAPH_BACKENDS:
            return "cpu"
        from ..common.torch_runtime import resolve_device

        return str(resolve_device(self.device or "auto"))

    # --- description ------------------------------------------------------------------------

    def info(self) -> dict:
        model_file = str(self.train_args.get("model") or "")
        return {
            "framework": self.framework,
            "task": self.task,
            "class_names": [self.names[i] for i in sorted(self.names)],
            "model_name": Path(model_file).stem if model_file else None,
            "architecture": type(self.yolo.model).__name__,
            "training_image_size": self.train_args.get("imgsz"),
            "keypoint_shape": self.kpt_shape,
            "inference_backend": self.backend_info,
        }

    # --- prediction -------------------------------------------------------------------------

    def load(self, paths: list[str]) -> list[np.ndarray] | None:
        """The images as ultralytics' own loader decodes them (BGR), for 3-channel models."""
        from ultralytics.utils.patches import imread

        if int(self.yolo.model.yaml.get("channels", 3)) != 3:
            return None
        images = self.decoder.map(imread, paths)
        if any(im is None or im.ndim != 3 for im in images):
            raise OSError("an image of the batch is not readable as a colour image")
        return images

    def predict(self, paths: list[str], conf: float, loaded: list[np.ndarray] | None = None) -> list:
        if loaded is None and self.decoder.threads > 1:
            # ultralytics' own loader reads one image after another; the same imread on the pool.
            loaded = self.load(paths)
        results = self.predictor_model.predict(
            loaded if loaded is not None else paths,
            imgsz=self.imgsz,
            conf=conf,
            iou=self.iou,
            device=self.device,
            batch=len(paths),
            max_det=MAX_DETECTIONS,
            verbose=False,
            save=False,
            predictor=self.predictor_class,
        )
        # ultralytics times its stages per image (the batch's average, in ms): preprocess
        # (letterbox, normalising; decoding is not in it), the forward pass, NMS.
        self.preprocess_seconds = sum(r.speed.get("preprocess") or 0.0 for r in results) / 1000
        self.forward_seconds = sum(r.speed.get("inference") or 0.0 for r in results) / 1000
        return results

    def reference_predict(self, paths: list[str], conf: float) -> list:
        """The batch through the PyTorch model in float32 on the CPU, with the job's settings: what
        a reduced-precision graph is compared with (precision_check.py)."""
        return self.yolo.predict(
            self.load(paths) or paths,
            imgsz=self.imgsz,
            conf=conf,
            iou=self.iou,
            device="cpu",
            batch=len(paths),
            max_det=MAX_DETECTIONS,
            verbose=False,
            save=False,
        )

    @staticmethod
    def image_size(result) -> tuple[int, int]:
        h, w = result.orig_shape[:2]
        return int(w), int(h)

    def describe(self, result, conf_threshold: float, for_evaluation: bool) -> tuple[dict, dict | None, Any]:
        """(reported predictions, what the evaluator needs, the result cut to the reported ones)."""
        if self.task == "classify":
            top = [int(i) for i in result.probs.top5]
            confs = [float(c) for c in result.probs.top5conf.cpu().numpy()]
            reported = {
                "class_id": top[0],
                "class_name": self.names[top[0]],
                "confidence": confs[0],
                "top5": [{"class_id": c, "class_name": self.names[c], "confidence": p} for c, p in zip(top, confs, strict=True)],
            }
            return reported, ({"ranked_classes": top, "scores": result.probs.data.float().cpu().numpy()} if for_evaluation else None), result

        boxes = result.boxes
        xyxy = boxes.xyxy.cpu().numpy()
        conf = boxes.conf.cpu().numpy()
        cls = boxes.cls.cpu().numpy().astype(int)
        keep = conf > conf_threshold  # as NMS cuts: strictly above
        shown = result[keep] if len(conf) else result
        polygons = [p.reshape(-1).tolist() for p in shown.masks.xy] if self.task == "segment" and shown.masks is not None else None
        keypoints = shown.keypoints.data.cpu().numpy() if self.task == "pose" and shown.keypoints is not None else None
        reported_boxes = []
        for i, k in enumerate(np.flatnonzero(keep)):
            box = {"bbox": xyxy[k].tolist(), "class_id": int(cls[k]), "class_name": self.names[int(cls[k])], "confidence": float(conf[k])}
            if polygons is not None:
                box["segmentation"] = [polygons[i]] if len(polygons[i]) >= 6 else []
            if keypoints is not None:
                box["keypoints"] = keypoints[i].tolist()
            reported_boxes.append(box)
        evaluation_input = None
        if for_evaluation:
            evaluation_input = {"boxes": xyxy, "confidences": conf, "classes": cls}
            if self.task == "segment":
                evaluation_input["masks"] = self._masks_at_original_scale(result)
            if self.task == "pose":
                evaluation_input["keypoints"] = result.keypoints.data.cpu().numpy() if result.keypoints is not None else np.zeros((0, *self.kpt_shape))
        return {"boxes": reported_boxes}, evaluation_input, shown

    @staticmethod
    def _masks_at_original_scale(result) -> np.ndarray:
        """Masks without the letterbox padding, at the evaluation raster's size (infer_metrics)."""
        import torch
        from ultralytics.utils import ops

        from ..common.infer_metrics import _mask_scale

        if result.masks is None:
            return np.zeros((0, 1, 1), dtype=np.uint8)
        h, w = result.orig_shape[:2]
        scale = _mask_scale(w, h)
        shape = (max(1, round(h * scale)), max(1, round(w * scale)))
        data = result.masks.data
        chunks = []
        for start in range(0, data.shape[0], 32):  # bounded memory with hundreds of low-confidence masks
            part = ops.scale_masks(data[start : start + 32][None].float(), shape)[0]
            chunks.append((part > 0.5).to(torch.uint8).cpu().numpy())
        return np.concatenate(chunks) if chunks else np.zeros((0, *shape), dtype=np.uint8)

    # --- drawing ----------------------------------------------------------------------------

    def render(self, shown, out_path: str, ground_truth: dict | None, evaluation: dict | None) -> None:
        """Boxes, masks, keypoints and labels with confidence (the top classes for a classifier);
        in a test run also the ground truth the model missed, and the true class."""
        import cv2

        # A copy: for classifiers plot() returns a read-only view of its PIL canvas.
        image = np.array(shown.plot(conf=True, labels=True, boxes=True, masks=True, probs=True))
        if ground_truth is not None and evaluation is not None:
            thickness = max(1, round(sum(image.shape[:2]) / 600))
            if self.task == "classify":
                true_name = self.names.get(int(ground_truth["class"]), str(ground_truth["class"]))
                text = f"true: {true_name} ({'correct' if evaluation['correct'] else 'wrong'})"
                cv2.putText(image, text, (4, image.shape[0] - 6), cv2.FONT_HERSHEY_SIMPLEX, max(0.3, image.shape[0] / 800), MISSED_COLOR, thickness)
            else:
                for miss in evaluation["missed"]:
                    x1, y1, x2, y2 = (round(v) for v in ground_truth["boxes"][miss["ground_truth"]])
                    cv2.rectangle(image, (x1, y1), (x2, y2), MISSED_COLOR, thickness)
                    label = f"missed {self.names.get(miss['class_id'], miss['class_id'])}"
                    cv2.putText(image, label, (x1, max(10, y1 - 3)), cv2.FONT_HERSHEY_SIMPLEX, max(0.3, image.shape[0] / 1200), MISSED_COLOR, thickness)
        if not cv2.imwrite(out_path, image):
            raise OSError(f"could not write the visualisation {out_path}")

    # --- explainability ---------------------------------------------------------------------

    def xai_network(self):
        """A float copy of the network with gradients on (the predictor's copy is fused and frozen),
        and the module layer paths are resolved against (`model.22` = its 23rd layer)."""
        import torch.nn as nn

        net = copy.deepcopy(self.yolo.model).float().eval()
        for p in net.parameters():
            p.requires_grad_(True)
        classify = self.task == "classify"

        class Output(nn.Module):
            """One tensor per image: logits for a classifier, (box, class scores, ...) x anchors for detection."""

            def __init__(self):
                super().__init__()
                self.net = net

            def forward(self, x):
                out = self.net(x)
                if classify:
                    return out[1] if isinstance(out, (list, tuple)) else out  # (probabilities, logits) in eval
                return _first_tensor(out)

        return Output(), net

    def default_xai_layers(self, root) -> list[str]:
        layers = root.model
        head = layers[-1]
        if self.task == "classify":
            return [f"model.{len(layers) - 2}"]  # the block feeding the classifier head
        # The neck outputs the detection head reads: one heatmap per scale, averaged.
        return [f"model.{i}" for i in getattr(head, "f", [len(layers) - 2])]

    def xai_reshape_for(self, root, paths: list[str]):
        """YOLO layers output feature maps (B, C, H, W) as Grad-CAM wants them."""
        return None

    def xai_methods(self) -> list[str]:
        # Score-CAM runs the network once per channel of the target layer: fine for a classifier,
        # hundreds of full detection passes per image for YOLO.
        if self.task == "classify":
            return ["gradcam", "gradcam++", "eigencam", "scorecam", "layercam", "lime", "shap"]
        return ["gradcam", "gradcam++", "eigencam", "layercam"]

    def xai_input(self, image_path: str) -> CamInput:
        import cv2
        import torch

        bgr = cv2.imread(image_path)
        if bgr is None:
            raise OSError(f"cannot read {image_path}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = bgr.shape[:2]
        size = self.imgsz
        if self.task == "classify":
            # Classifiers see the whole image stretched to the input size (no crop), so the
            # heatmap covers every pixel of the original.
            square = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_LINEAR)
            tensor = torch.from_numpy(square).permute(2, 0, 1).float()[None] / 255.0
            return CamInput(tensor, rgb, lambda heat: cv2.resize(heat, (w, h), interpolation=cv2.INTER_LINEAR))
        square, ratio, top, left = _letterbox(bgr, size)
        tensor = torch.from_numpy(cv2.cvtColor(square, cv2.COLOR_BGR2RGB)).permute(2, 0, 1).float()[None] / 255.0
        nh, nw = max(1, round(h * ratio)), max(1, round(w * ratio))

        def to_original(heat: np.ndarray) -> np.ndarray:
            return cv2.resize(heat[top : top + nh, left : left + nw], (w, h), interpolation=cv2.INTER_LINEAR)

        def box_to_input(box: list[float]) -> list[float]:
            x1, y1, x2, y2 = box
            return [x1 * ratio + left, y1 * ratio + top, x2 * ratio + left, y2 * ratio + top]

        return CamInput(tensor, rgb, to_original, box_to_input)

    def xai_target(self, cam_input: CamInput, reported: dict):
        """(target, what it explains) for the image's reported prediction."""
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        if self.task == "classify":
            return ClassifierOutputTarget(reported["class_id"]), {"class_id": reported["class_id"], "class_name": reported["class_name"]}
        boxes = [cam_input.box_to_input(b["bbox"]) for b in reported["boxes"]]
        classes = [b["class_id"] for b in reported["boxes"]]
        explained = {"detections": len(classes), "classes": sorted({self.names[c] for c in classes})}
        return YoloBoxScoreTarget(boxes, classes, len(self.names)), explained


@entry
def recognizes(params: CheckpointParams) -> bool:
    """Whether an ultralytics run wrote the checkpoint, or it holds SAM 2 weights (asked when
    FRAMEWORK is not set). Nothing is unpickled to find out whether it is a YOLO checkpoint: the
    pickle's opcodes name ultralytics classes. Loading it later refuses whatever else it names
    (safe_load). SAM 2 weights are a plain state dict, read weights_only."""
    from ..safe_load import pickle_globals
    from .sam import read_state

    if any(name.startswith("ultralytics.") for name in pickle_globals(params["checkpoint"]) or ()):
        return True
    return read_state(params["checkpoint"]) is not None


@entry
def open_session(params: SessionParams) -> ModelInfo:
    from ..common.classifier_infer import read_checkpoint_framework
    from .sam import Sam2Backend, read_state

    sam2 = read_state(params["checkpoint"])
    if sam2 is not None:
        configure_offline()
        prepare_fonts()
        return open_with(Sam2Backend(params["checkpoint"], sam2, params), params)
    if params.get("prompt_checkpoint"):
        from .sam import PromptError

        raise PromptError("prompts SAM 2 weights only, and CHECKPOINT_PATH holds no SAM 2 weights; unset PROMPT_CHECKPOINT_PATH")
    try:
        backend = UltralyticsBackend(params["checkpoint"], params)
    except Exception:
        other = read_checkpoint_framework(params["checkpoint"])
        if other:
            raise FrameworkMismatchError(f"FRAMEWORK=ultralytics, but the checkpoint was written by {other}") from None
        raise
    return open_with(backend, params)
