/** The converters from the dataset model to each framework's layout. */
export { convertToYolo, yoloClasses, type YoloClass, type YoloConversion, type YoloOptions, type YoloSplitCounts, type YoloTask } from './yolo.js';
export {
  convertToImageFolder,
  writeHuggingFaceManifest,
  type ClassificationCounts,
  type HuggingFaceClass,
  type HuggingFaceManifest,
  type ImageFolderClass,
  type ImageFolderConversion,
} from './classification.js';
export { mergeMultiSegment } from './polygons.js';
export type { LinkMode } from './files.js';
