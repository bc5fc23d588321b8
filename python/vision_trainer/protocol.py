"""The seam with TypeScript: what every entry point takes and answers, and the trainer events.

These TypedDicts mirror the zod schemas of src/frameworks/protocol.ts, which are the source:
TypeScript checks every parameter before it leaves and parses every answer when it arrives.
test/python/test_protocol.py compares the two, key by key, through the JSON Schemas generated
from the zod side (docs/schemas/bridge.schema.json). Names are snake_case on both sides.
"""

# No `from __future__ import annotations` here: TypedDict must see NotRequired[...] as a type,
# not a string, to tell required keys from optional ones.
from typing import Any, Literal, TypedDict

from typing_extensions import NotRequired

Metrics = dict[str, float | None]

# ---------------------------------------------------------------------------------------------
# Bridge health


class Environment(TypedDict):
    python: str
    executable: str
    torch: NotRequired[str]
    cuda_available: NotRequired[bool]
    cuda_devices: NotRequired[int]
    torch_error: NotRequired[str]


# ---------------------------------------------------------------------------------------------
# Preflight and doctor: vision_trainer.environment.report(params), <framework>.train.check_model(params)


class EnvironmentParams(TypedDict):
    packages: list[str]
    imports: list[str]
    device: str


class Gpu(TypedDict):
    index: int
    name: str
    memory_gb: float


class ImportCheck(TypedDict):
    module: str
    seconds: float
    error: str | None


class TorchReport(TypedDict):
    version: str
    cuda_build: str | None
    gpus: list[Gpu]
    mps_available: bool
    threads: int


class EnvironmentReport(TypedDict):
    python: str
    executable: str
    packages: dict[str, str | None]
    imports: list[ImportCheck]
    torch: TorchReport | None
    torch_error: str | None
    device_problem: str | None


class ModelCheckParams(TypedDict):
    model_name: str
    task_type: str
    imgsz: int
    has_weights: bool
    config_overrides: dict[str, Any] | None


class ModelCheck(TypedDict):
    description: str
    problem: str | None
    variable: str


# ---------------------------------------------------------------------------------------------
# Training: vision_trainer.<framework>.train(params, emit)


class DistributedParams(TypedDict):
    nnodes: int
    node_rank: int
    nproc_per_node: int | Literal["auto", "gpu"]
    master_addr: str
    master_port: int
    run_id: str
    rendezvous_timeout_seconds: float
    join_timeout_seconds: float
    node_timeout_seconds: float
    events_socket: str | None
    stop_file: str


class CheckInParams(TypedDict):
    distributed: DistributedParams


class CheckInAnswer(TypedDict):
    hosting: bool


class AnnounceFailureParams(TypedDict):
    distributed: DistributedParams
    kind: Literal["failed", "stopped"]
    message: str
    exit_code: int
    wait_seconds: float


class AnnounceFailureAnswer(TypedDict):
    delivered: bool


class BestSoFar(TypedDict):
    path: str
    epoch: int
    value: float | None


class TrainParams(TypedDict):
    model_name: str
    task_type: str
    data: str
    class_names: list[str]
    class_ids: list[int]
    val_images: str | None
    epochs: int
    batch: int
    imgsz: int
    device: str
    workers: int
    project: str
    weights: str | None
    lr: float | None
    resume_from: str | None
    best_from: BestSoFar | None
    log_file: str
    primary_metric: str
    job_id: str
    config_overrides: dict[str, Any] | None
    distributed: DistributedParams | None
    trainer_args: dict[str, Any]
    seed: int | None
    tensorboard_dir: str | None
    text_encoder: str | None


class TrainerArgsParams(TypedDict):
    trainer_args: dict[str, Any]
    task_type: str


class LabelCheckParams(TypedDict):
    data: str
    task_type: str
    trainer_args: dict[str, Any]


class LabelCheckAnswer(TypedDict):
    started: bool
    reason: str | None
    images: int


class TrainerArgProblem(TypedDict):
    key: str
    message: str


class TrainerArgsAnswer(TypedDict):
    resolved: dict[str, Any]
    problems: list[TrainerArgProblem]


class MarkBestParams(TypedDict):
    path: str
    epoch: int
    value: float | None
    score: float | None
    decided_by: Literal["backend", "score"] | None


class MarkBestAnswer(TypedDict):
    previous_best_epoch: int | None


class RecordedBest(TypedDict):
    epoch: int | None
    value: float | None


class TrainAnswer(TypedDict):
    best_epoch: int | None
    best_path: str | None
    last_path: str | None
    stopped_early: bool
    stopped_by_node: NotRequired[int | None]


class EpochValidation(TypedDict):
    primary_metric_name: str
    primary_metric_value: float | None
    metrics: Metrics
    per_class_metrics: list[dict[str, Any]]
    confusion_matrix: NotRequired[list[list[float]] | None]
    confusion_matrix_class_ids: NotRequired[list[int] | None]
    pr_curves: NotRequired[dict[str, dict[str, list[float | None]]] | None]
    num_images_validated: int
    validation_time_seconds: float | None
    image_results_file: NotRequired[str | None]


class ResumedBest(TypedDict):
    epoch: int
    value: float | None
    path: str


class StartEvent(TypedDict):
    kind: Literal["start"]
    epochs: int
    start_epoch: int
    batches_per_epoch: int
    device: str
    save_dir: NotRequired[str]
    best: NotRequired[ResumedBest | None]
    settings: NotRequired[dict[str, Any]]


class BatchEvent(TypedDict):
    kind: Literal["batch"]
    epoch: int
    epochs: int
    batch: int
    batches: int
    losses: Metrics


class EpochEvent(TypedDict):
    kind: Literal["epoch"]
    epoch: int
    epochs: int
    losses: Metrics
    learning_rate: float | None
    metrics: Metrics
    validation: EpochValidation | None
    fitness: NotRequired[float | None]
    is_best: bool
    epoch_time_seconds: NotRequired[float | None]


class CheckpointEvent(TypedDict):
    kind: Literal["checkpoint"]
    epoch: int
    last_path: str
    best_path: str | None
    is_best: bool
    stopping: NotRequired[bool]
    last_replaced: NotRequired[bool]


class EndEvent(TypedDict):
    kind: Literal["end"]
    best_epoch: int | None
    last_epoch: int | None
    best_path: str | None
    last_path: str | None


TrainerEvent = StartEvent | BatchEvent | EpochEvent | CheckpointEvent | EndEvent

# ---------------------------------------------------------------------------------------------
# Inference: vision_trainer.<framework>.{recognizes, open_session}, then the shared session


class CheckpointParams(TypedDict):
    checkpoint: str


class XaiParams(TypedDict):
    method: str
    layers: list[str] | None
    samples: NotRequired[int | None]


class DatasetClasses(TypedDict):
    ids: list[int]
    names: list[str]


class GraphNms(TypedDict):
    iou_threshold: float
    min_confidence: float
    max_detections: int
    class_aware: bool


class GraphModel(TypedDict):
    path: str
    format: Literal["onnx", "openvino"]
    uri: str
    framework: str
    task_type: str
    class_names: list[str]
    class_ids: list[int]
    input_size: list[int]
    embedded_preprocessing: bool
    embedded_softmax: bool
    nms: GraphNms | None
    box_units: str
    batch: int | None
    quantized: bool


class SessionParams(TypedDict):
    checkpoint: str
    task_type: str
    image_size: int
    conf_threshold: float
    iou_threshold: float
    device: str
    evaluate: bool
    xai: XaiParams | None
    inference_backend: Literal["auto", "pytorch", "onnx", "openvino"]
    graph_dir: str
    prompt_checkpoint: NotRequired[str | None]
    dataset_classes: NotRequired[DatasetClasses | None]
    image_count: NotRequired[int | None]
    graph_model: NotRequired[GraphModel | None]
    decode_threads: NotRequired[int | None]
    prefetch: NotRequired[bool | Literal["auto"]]
    inference_precision: NotRequired[Literal["fp32", "bf16"]]


class BatchItem(TypedDict):
    path: str
    key: str
    ground_truth: dict[str, Any] | None
    visualization_path: str | None
    xai_path: str | None
    mask_path: NotRequired[str | None]


class PredictParams(TypedDict):
    items: list[BatchItem]
    prefetch: NotRequired[list[str]]


class XaiProgress(TypedDict):
    method: str
    seconds: float


class PrecisionCheck(TypedDict):
    against: str
    images: int
    compared: str
    agreement: float | None
    max_score_difference: float | None
    error: NotRequired[str]


class InferenceBackendInfo(TypedDict):
    name: Literal["pytorch", "onnx", "openvino"]
    runtime: str
    device: str
    export_seconds: float | None
    xai_backend: Literal["pytorch"] | None
    requested: Literal["auto", "pytorch", "onnx", "openvino"]
    reason: str
    cpu_threads: int | None
    model_path: NotRequired[str | None]
    decode_threads: NotRequired[int]
    prefetch: NotRequired[bool]
    prefetch_reason: NotRequired[str]
    malloc_tunables: NotRequired[str | None]
    omp_spin_count: NotRequired[str | None]
    memory_format: NotRequired[Literal["contiguous", "channels_last"]]
    precision: NotRequired[Literal["fp32", "bf16"]]
    precision_requested: NotRequired[Literal["fp32", "bf16"]]
    precision_reason: NotRequired[str]


class ModelInfo(TypedDict):
    framework: str
    task: str
    class_names: list[str]
    class_ids: list[int]
    class_ids_stored: bool
    model_name: str | None
    architecture: str
    training_image_size: float | list[float] | None
    keypoint_shape: list[int] | None
    xai_layers: list[str]
    prediction_confidence: float
    inference_backend: InferenceBackendInfo
    prompts: NotRequired[Literal["ground_truth_boxes", "detector"] | None]


class BatchAnswer(TypedDict):
    images: list[dict[str, Any]]
    inference_seconds: float
    preprocess_seconds: float | None
    forward_seconds: float | None
    cpu_seconds: float
    precision_check: NotRequired[PrecisionCheck]


# ---------------------------------------------------------------------------------------------
# Export: vision_trainer.<framework>.{check_format, describe, export, open_original}


class CheckFormatParams(TypedDict):
    format: str
    device: str


class CheckFormatAnswer(TypedDict):
    device: str
    note: NotRequired[str]
    # pip requirements of the format's optional group that are not installed (a configuration error)
    missing_packages: NotRequired[list[str]]


class UltralyticsFacts(TypedDict):
    framework: Literal["ultralytics"]
    task_type: str
    architecture: str
    class_names: list[str]
    class_ids: list[int]
    image_size: list[int]
    versions: dict[str, str]
    keypoint_shape: list[int] | None
    stride: int
    mask_coefficients: int | None


class TorchFacts(TypedDict):
    framework: Literal["timm", "huggingface"]
    task_type: str
    architecture: str
    class_names: list[str]
    class_ids: list[int]
    image_size: list[int]
    versions: dict[str, str]
    model_name: str
    mean: list[float]
    std: list[float]
    interpolation: Literal["bilinear", "bicubic"]
    resize_mode: Literal["shorter_side_center_crop", "squash"]
    crop_pct: float


class Normalization(TypedDict):
    method: Literal["divide", "standardize"]
    mean: list[float]
    std: list[float]


class ExportParams(TypedDict):
    checkpoint: str
    format: str
    out_dir: str
    input_size: list[int]
    batch: int
    device: str
    opset: int
    embed_preprocessing: Normalization | None


class NmsParams(TypedDict):
    iou_threshold: float
    min_confidence: float
    max_detections: int


class UltralyticsExportParams(ExportParams):
    simplify: bool
    quantize: int | str | None
    nms: NmsParams | None
    optimization_level: int
    quantize_static: bool
    calibration: list[str]
    calibration_shape: list[int]


class TorchExportParams(ExportParams):
    optimization_level: int
    half: bool
    quantize_dynamic: bool
    embed_softmax: bool
    quantize_static: bool
    calibration: list[str]
    calibration_shape: list[int]


class ExportAnswer(TypedDict):
    path: str
    directory: bool
    notes: NotRequired[list[str]]
    unquantized_size_bytes: NotRequired[int]
    float32_modules: NotRequired[list[str]]


class OpenOriginalParams(TypedDict):
    handle: str
    checkpoint: str
    device: str
    embedded_postprocessing: bool
    # the export gives coordinates as fractions of the input size (ultralytics' LiteRT exports)
    normalized_coordinates: NotRequired[bool]
    nms: NotRequired[NmsParams | None]


class OpenExportedParams(TypedDict):
    handle: str
    format: str
    path: str


class OpenedModel(TypedDict):
    handle: str
    device: str


class HandleParams(TypedDict):
    handle: str


class ModelInput(TypedDict):
    handle: str
    input_file: str
    shape: list[int]


class RunModelParams(ModelInput):
    output_prefix: str


class OutputFile(TypedDict):
    path: str
    shape: list[int]


class RunModelAnswer(TypedDict):
    outputs: list[OutputFile]
    seconds: float


class BenchmarkParams(ModelInput):
    warmup: int
    runs: int


class ModelIoParams(TypedDict):
    handle: str
    shape: list[int]


class TensorQuantization(TypedDict):
    scale: float
    zero_point: int


class TensorInfo(TypedDict):
    name: str
    shape: list[int | str]
    dtype: str
    quantization: NotRequired[TensorQuantization]


class ModelIo(TypedDict):
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]


class PathParams(TypedDict):
    path: str


class InspectCoremlParams(TypedDict):
    path: str
    input_shape: list[int]
    class_names: list[str]
    classifier: bool


class CoremlInspection(TypedDict):
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    spec_type: str
    class_labels: list[str] | None
    checks: list[str]
    user_metadata: dict[str, str]


class DecodeItem(TypedDict):
    path: str
    out: str


class DecodeImagesParams(TypedDict):
    items: list[DecodeItem]


class DecodedImage(TypedDict):
    width: int
    height: int


class ValidationObject(TypedDict):
    class_id: int
    bbox: list[float]
    segmentation: NotRequired[list[list[float]]]
    keypoints: NotRequired[list[list[float]]]
    iscrowd: NotRequired[bool]


class ValidationImage(TypedDict):
    width: float
    height: float
    label: NotRequired[int]
    mask: NotRequired[str]
    objects: list[ValidationObject]


class ValidationGroundTruth(TypedDict):
    class_names: list[str]
    class_ids: list[int]
    keypoint_count: int
    mask_class_ids: NotRequired[list[list[int]]]
    images: list[ValidationImage]


class EvaluateParams(TypedDict):
    task: str
    ground_truth: ValidationGroundTruth
    predictions: list[list[dict[str, Any]]]


class FinalizeParams(TypedDict):
    path: str
    level: int


class FinalizeAnswer(TypedDict):
    level: int
    opset: int
    passes: list[str]


class SpecializeAnswer(TypedDict):
    passes: list[str]
    operators: list[str]


class QuantizeParams(TypedDict):
    source: str
    output: str
    type: Literal["dynamic", "static"]
    dtype: Literal["int8", "int16", "float16"]
    calibration: list[str]
    input_shape: list[int]


class QuantizeAnswer(TypedDict):
    method: str
    output: str
