/**
 * Which framework trains which task with which model names. Config validation uses this to
 * turn an impossible TASK_TYPE/MODEL_NAME/FRAMEWORK combination into a readable error.
 */
export const TASK_TYPES = [
  'object_detection',
  'instance_segmentation',
  'pose_estimation',
  'image_classification',
  'zero_shot_classification',
  'semantic_segmentation',
] as const;
export type TaskType = (typeof TASK_TYPES)[number];

export const FRAMEWORKS = ['ultralytics', 'timm', 'huggingface'] as const;
export type Framework = (typeof FRAMEWORKS)[number];

export const FRAMEWORK_TASKS: Record<Framework, readonly TaskType[]> = {
  ultralytics: ['object_detection', 'instance_segmentation', 'pose_estimation', 'image_classification'],
  timm: ['image_classification'],
  huggingface: ['image_classification', 'zero_shot_classification', 'semantic_segmentation'],
};

/** The design's ultralytics family: yolo11n..x plus -seg/-pose/-cls; yolov8 and yolo12 share the layout. */
const YOLO_NAME = /^(yolo(?:v8|11|12)[nsmlx])(-seg|-pose|-cls)?$/;
const YOLO_SUFFIX_TASK: Record<string, TaskType> = {
  '': 'object_detection',
  '-seg': 'instance_segmentation',
  '-pose': 'pose_estimation',
  '-cls': 'image_classification',
};
const YOLO_TASK_SUFFIX: Partial<Record<TaskType, string>> = Object.fromEntries(Object.entries(YOLO_SUFFIX_TASK).map(([s, t]) => [t, s]));

/** YOLO-World v2 (open-vocabulary detection), the design's yolo_world_v2_s/m plus the other scales ultralytics ships. */
const YOLO_WORLD_NAME = /^yolo_world_v2_[nsmlx]$/;
export const isYoloWorld = (modelName: string): boolean => YOLO_WORLD_NAME.test(modelName);

/** HuggingFace names from the design plus families whose checkpoint names use dashes. */
const HF_NAME = /\/|^(clip|dino|dinov2|vit|deit|beit|swin|swinv2|convnextv2|siglip|mobilevit|levit|regnet-y|resnet-|segformer|upernet|dpt)[-\w.]*$/i;

export function inferFramework(modelName: string): Framework {
  // The design lists yolo_world_v2_* and sam2_* under ultralytics too (sam2_*, sam2.1_* refused later with a reason).
  if (/^(yolo|sam\d?(\.\d)?_|rtdetr)/i.test(modelName)) return 'ultralytics';
  if (HF_NAME.test(modelName) && modelName.includes('-')) return 'huggingface';
  return 'timm';
}

/** Returns a problem description, or undefined when the combination can be trained. */
export function checkModelForTask(framework: Framework, taskType: TaskType, modelName: string): string | undefined {
  if (!FRAMEWORK_TASKS[framework].includes(taskType)) {
    const able = (Object.keys(FRAMEWORK_TASKS) as Framework[]).filter((f) => FRAMEWORK_TASKS[f].includes(taskType));
    return able.length
      ? `${framework} does not train ${taskType}; use FRAMEWORK=${able.join(' or ')} (supported by ${framework}: ${FRAMEWORK_TASKS[framework].join(', ')})`
      : `no supported framework trains ${taskType} yet; supported tasks: ${[...new Set(Object.values(FRAMEWORK_TASKS).flat())].join(', ')}`;
  }
  if (framework === 'ultralytics') {
    if (isYoloWorld(modelName)) {
      return taskType === 'object_detection'
        ? undefined
        : `${modelName} (YOLO-World) detects boxes only (TASK_TYPE=object_detection); for ${taskType} use a yolo11 model (e.g. yolo11n${YOLO_TASK_SUFFIX[taskType] ?? ''})`;
    }
    if (/^sam/i.test(modelName)) return samRefusal(modelName, taskType);
    if (/^(yolo_world|yolo-world|sam)/i.test(modelName)) {
      return `${modelName} is an open-vocabulary/segment-anything model, which this runtime does not fine-tune; use yolo_world_v2_s or yolo_world_v2_m (object_detection) or a yolo11 model (e.g. yolo11n${YOLO_TASK_SUFFIX[taskType] ?? ''})`;
    }
    const m = YOLO_NAME.exec(modelName);
    if (!m)
      return `unknown ultralytics model; expected yolo11n|s|m|l|x (also yolov8*/yolo12*) with -seg, -pose or -cls for those tasks, e.g. yolo11n${YOLO_TASK_SUFFIX[taskType] ?? ''}`;
    const modelTask = YOLO_SUFFIX_TASK[m[2] ?? ''];
    if (modelTask !== taskType) return `${modelName} is a ${modelTask} model; for ${taskType} use ${m[1]}${YOLO_TASK_SUFFIX[taskType] ?? ''}`;
  }
  if (framework === 'huggingface' && taskType === 'zero_shot_classification' && !/clip|siglip/i.test(modelName)) {
    return `zero_shot_classification needs a CLIP-style model (e.g. clip-vit-base-patch32), not ${modelName}`;
  }
  return undefined;
}

/**
 * SAM 2 and 2.1 (sam2_t|s|b|l, sam2.1_t|s|b|l) are promptable mask models: nothing here fine-tunes it (its trainer needs
 * prompts sampled from masks and a video memory this runtime does not build) and its image
 * encoder + prompt decoder pair is not one graph the export formats hold. It runs in `infer` jobs.
 */
function samRefusal(modelName: string, taskType: TaskType): string {
  return (
    `${modelName} (Segment Anything) is neither trained nor exported by this runtime: SAM 2 runs in inference only ` +
    '(vision-trainer infer, TASK_TYPE=instance_segmentation, CHECKPOINT_PATH = SAM 2 or 2.1 weights of any size, sam2_t to sam2.1_l; a test run prompts it with the ground-truth boxes, ' +
    `an inference job with the boxes of PROMPT_CHECKPOINT_PATH's detector). To train or export ${taskType} use a yolo11 model, e.g. yolo11n${YOLO_TASK_SUFFIX[taskType] ?? ''}`
  );
}

/** The metric that decides the best epoch/checkpoint for a task. */
export function primaryMetric(taskType: TaskType): string {
  if (taskType === 'semantic_segmentation') return 'mIoU';
  return taskType === 'image_classification' || taskType === 'zero_shot_classification' ? 'accuracy' : 'mAP50-95';
}
