#!/usr/bin/env bash
# The training, inference and ONNX benches on a CUDA machine, in one go (under 8 minutes on one
# modern GPU): `bash bench/gpu.sh` after `npm run setup`. Results: bench/results/gpu/summary.md
# (and bridge.md, infer.md), the same ratios as on CPU plus absolute images/s.
#
#   training   bench:bridge on cuda:0: both sides with AMP (bfloat16 where the GPU has it, as
#              vision-trainer does), YOLO11n at 640 px, resnet18 and the small ViT at 224 px,
#              batch sizes from the GPU's memory; the bench fails if the two sides resolved
#              different settings (AMP, threads, workers, cudnn.benchmark, ...)
#   inference  bench:infer on cuda:0 at 640 px, batch from memory
#   ONNX       bench:onnx: onnxruntime's CPU execution provider against PyTorch eager, as on
#              CPU (requirements.txt pins the CPU build of onnxruntime: no CUDA provider here)
#
#   DDP        on a machine with 2 or more GPUs: one ultralytics detection job on every GPU
#              (DEVICE=0,1,...) through vision-trainer's own elastic launch, ultralytics' DDP
#              training loop joined to it (NCCL), local storage, no callbacks; it must exit 0 and
#              store best.pt. One GPU cannot run DDP (NCCL refuses two ranks on one device): then
#              the check says so and is not counted as passed.
#
#   TensorRT   EXPORT_FORMAT=tensorrt of a tiny detector: the engine built for this GPU and
#              validated against the checkpoint (needs NVIDIA's tensorrt wheel)
#
#   bash bench/gpu.sh --dry-run   the same chain on the CPU with tiny sizes and one repeat: checks
#                                 the script, the arguments and the result files without a GPU
#                                 (its figures are not measurements; results in bench/results/gpu-dry-run)
#   bash bench/gpu.sh --smoke     the dry run's tiny chain on cuda:0 (about a minute): checks that every
#                                 bench runs on this GPU and its Python before the full run spends minutes
#
#   BENCH_SKIP_BUILD=1   use the dist/ already there (a machine with no npm: bench/gpu-offline.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0 SMOKE=0
[[ "${1:-}" == "--dry-run" ]] && DRY_RUN=1
[[ "${1:-}" == "--smoke" ]] && SMOKE=1

[[ -n "${BENCH_SKIP_BUILD:-}" ]] || npm run build >/dev/null
PY="$(bash scripts/py.sh -c 'import sys; print(sys.executable)')"
# What the figures were measured with: a GPU machine's image may hold other versions than the pins.
"$PY" -c '
import importlib.metadata as metadata, importlib.util, platform, torch
names = ("torch", "torchvision", "ultralytics", "timm", "transformers", "onnxruntime")
found = ", ".join(f"{name} {metadata.version(name)}" for name in names if importlib.util.find_spec(name))
cuda = f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}" if torch.cuda.is_available() else "no CUDA"
print(f"Python {platform.python_version()}: {found}; {cuda}")
'

if [[ $DRY_RUN == 1 || $SMOKE == 1 ]]; then
  export BENCH_QUICK=1 BENCH_DETECT_IMGSZ=64 BENCH_CLASSIFY_IMGSZ=32 BENCH_BATCH=8
  if [[ $DRY_RUN == 1 ]]; then export BENCH_DEVICE=cpu BENCH_RESULTS_DIR=${BENCH_RESULTS_DIR:-bench/results/gpu-dry-run}
  else export BENCH_DEVICE=cuda:0 BENCH_RESULTS_DIR=${BENCH_RESULTS_DIR:-bench/results/gpu-smoke} BENCH_INFER_SETTINGS_REPEATS=0; fi
else
  # GPU memory in GiB, from torch (which the benches use): fails here when CUDA is not usable.
  MEM_GIB="$("$PY" -c 'import torch; assert torch.cuda.is_available(), "torch sees no CUDA device"; print(torch.cuda.get_device_properties(0).total_memory // 2**30)')"
  # Batch sizes by memory: YOLO11n at 640 px needs about 0.25 GiB per image in training with AMP,
  # resnet18/ViT at 224 px far less; capped where a bigger batch only shortens the bench's epoch
  # below what it can time.
  if (( MEM_GIB >= 40 )); then TRAIN_BATCH=64; INFER_BATCH=64
  elif (( MEM_GIB >= 16 )); then TRAIN_BATCH=32; INFER_BATCH=32
  else TRAIN_BATCH=16; INFER_BATCH=16; fi
  export BENCH_DEVICE=cuda:0 BENCH_RESULTS_DIR=${BENCH_RESULTS_DIR:-bench/results/gpu}
  # bench:infer's thread-count table is about CPUs; the ONNX/OpenVINO backends run on the CPU only.
  export BENCH_INFER_SETTINGS_REPEATS=0
  export BENCH_BATCH=$TRAIN_BATCH BENCH_INFER_BATCH=$INFER_BATCH BENCH_DETECT_IMGSZ=640 BENCH_CLASSIFY_IMGSZ=224 BENCH_IMGSZ=640
  # Enough images that an epoch is several batches; 2 repeats x 3 epochs keep it under 8 minutes.
  # BENCH_REPEATS=1 where the machine's minutes are counted (each repeat is a pair of runs per bench).
  export BENCH_IMAGES=$((TRAIN_BATCH * 6)) BENCH_PER_CLASS=$((TRAIN_BATCH / 2)) BENCH_INFER_IMAGES=$((INFER_BATCH * 10)) BENCH_REPEATS=${BENCH_REPEATS:-2} BENCH_EPOCHS=3 BENCH_SECONDS=3
  echo "GPU: $("$PY" -c 'import torch; p = torch.cuda.get_device_properties(0); print(f"{p.name}, {p.total_memory / 2**30:.0f} GiB")'); training batch $TRAIN_BATCH, inference batch $INFER_BATCH"
fi

started=$(date +%s)
BENCH_ALL=${BENCH_ALL:-bridge,infer,onnx} node dist/bench/all.js || status=$?

# Multi-GPU DDP: ultralytics detection on every GPU (the dry run: 2 CPU processes, gloo).
if [[ $DRY_RUN == 1 ]]; then GPUS=2; DDP_DEVICE=cpu; DDP_PX=64; DDP_IMAGES=24; DDP_EPOCHS=1; else
  GPUS="$("$PY" -c 'import torch; print(torch.cuda.device_count())')"; DDP_DEVICE="$(seq -s, 0 $((GPUS - 1)))"; DDP_PX=320; DDP_IMAGES=64; DDP_EPOCHS=2
fi
if (( GPUS >= 2 )); then
  ddp="$(mktemp -d)"
  (cd python && "$PY" -m vision_trainer.sample_data detection "$ddp/dataset" --images "$DDP_IMAGES" --size "$DDP_PX" >/dev/null)
  ddp_started=$(date +%s)
  if env STORAGE_TYPE=local LOCAL_STORAGE_PATH="$ddp/storage" WORK_DIR="$ddp/work" DATASET_PATH="$ddp/dataset" DATASET_ID=ddp \
      JOB_ID=gpu-ddp TASK_TYPE=object_detection MODEL_NAME=yolo11n EPOCHS="$DDP_EPOCHS" IMAGE_SIZE="$DDP_PX" BATCH_SIZE=$((8 * GPUS)) \
      DEVICE="$DDP_DEVICE" NPROC_PER_NODE="$GPUS" node dist/src/cli.js train --no-callbacks >"$ddp/job.log" 2>&1 &&
      grep -q "node 0 of 1: $GPUS worker process(es)" "$ddp/job.log" && [[ -s "$ddp/storage/checkpoints/job-gpu-ddp/best.pt" ]]; then
    echo "DDP: ultralytics detection on $GPUS processes ($DDP_DEVICE): passed in $(( $(date +%s) - ddp_started )) s"
  else
    echo "DDP: ultralytics detection on $GPUS processes ($DDP_DEVICE) FAILED; the job's log:"; tail -n 60 "$ddp/job.log"; status=1
  fi
else
  echo "DDP: not checked: torch sees $GPUS GPU (DDP needs 2)"
fi
# TensorRT export: a tiny detector trained here, exported with EXPORT_FORMAT=tensorrt (ultralytics
# builds the engine for this GPU, FP16 with QUANTIZATION_DTYPE=float16) and validated against the
# checkpoint on its own dataset (the engine runs through the package's Python wrapper, mAP drop in
# metadata.json). It needs NVIDIA's `tensorrt` wheel matching the CUDA driver (not in any
# requirements group). The dry run checks the refusal instead: no CUDA GPU, exit code 5.
if [[ $DRY_RUN == 0 ]] && ! "$PY" -c 'import tensorrt' 2>/dev/null; then
  # Known before a fixture is trained for it: a minute saved on a machine lent by the minute.
  echo "TensorRT: not checked: NVIDIA's tensorrt wheel is not installed (pip install tensorrt-cu12, matching the driver's CUDA)"
else
trt="$(mktemp -d)"
(cd python && "$PY" -m vision_trainer.sample_data detection "$trt/dataset" --images 24 --size 64 >/dev/null)
trt_env=(STORAGE_TYPE=local LOCAL_STORAGE_PATH="$trt/storage" WORK_DIR="$trt/work" DATASET_PATH="$trt/dataset" TASK_TYPE=object_detection MODEL_NAME=yolo11n)
if env "${trt_env[@]}" JOB_ID=gpu-trt-train DATASET_ID=trt EPOCHS=2 IMAGE_SIZE=64 BATCH_SIZE=8 DEVICE="$([[ $DRY_RUN == 1 ]] && echo cpu || echo 0)" \
    node dist/src/cli.js train --no-callbacks >"$trt/train.log" 2>&1; then
  trt_export=(env "${trt_env[@]}" JOB_ID=gpu-trt EXPORT_FORMAT=tensorrt CHECKPOINT_PATH="file://$trt/storage/checkpoints/job-gpu-trt-train/best.pt"
    ENABLE_VALIDATION=true VALIDATION_DATASET_ID=trt ACCURACY_DROP_MAX=0.05 DEVICE="$([[ $DRY_RUN == 1 ]] && echo auto || echo 0)" node dist/src/cli.js export --no-callbacks)
  trt_status=0; "${trt_export[@]}" >"$trt/export.log" 2>&1 || trt_status=$?
  if [[ $DRY_RUN == 1 ]]; then
    if [[ $trt_status == 5 ]] && grep -q "needs a CUDA GPU" "$trt/export.log"; then echo "TensorRT: refused without a CUDA GPU (exit 5), as it should"; else
      echo "TensorRT: the CPU refusal is wrong (exit $trt_status):"; tail -n 30 "$trt/export.log"; status=1; fi
  elif [[ $trt_status == 0 ]] && [[ -s "$trt/storage/export-jobs/gpu-trt/model.tensorrt" ]]; then
    echo "TensorRT: engine built and validated: $(grep -m1 '^.*validation: ' "$trt/export.log" | sed 's/.*validation: /validation: /')"
  else
    echo "TensorRT: export FAILED (exit $trt_status); the job's log:"; tail -n 60 "$trt/export.log"; status=1
  fi
else
  echo "TensorRT: the fixture's training FAILED:"; tail -n 30 "$trt/train.log"; status=1
fi
fi

echo
echo "bench/gpu.sh: $(( $(date +%s) - started )) s; results in $BENCH_RESULTS_DIR/summary.md"
exit "${status:-0}"
