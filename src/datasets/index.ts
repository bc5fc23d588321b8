/** Datasets: the file formats, the model they are read into, splits and converters. */
export * from './schema.js';
export type * from './model.js';
export { loadDataset, parseAnnotationsText, detectFormat, type LoadOptions } from './load.js';
export { readImageHeader, type ImageHeader } from './image-files.js';
export { PIXEL_TOLERANCE } from './checks.js';
export * from './splits.js';
export { PythonRandom } from './python-random.js';
export * from './convert/index.js';
