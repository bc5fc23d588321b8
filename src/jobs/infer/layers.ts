/**
 * XAI_TARGET_LAYERS is data, never code: each entry must be a layer path, submodule names and
 * integer indices joined by dots (`model.22`, `layer4`, `blocks.-1.norm1`). This check runs before
 * anything is downloaded; Python then resolves each path through the model's named children
 * (python/vision_trainer/common/xai.py, same grammar) and names the part that does not exist.
 */
import type { ConfigProblem } from '../../errors.js';

const PART = String.raw`(?:[A-Za-z_][A-Za-z0-9_]*|-?\d+)`;
export const LAYER_PATH = new RegExp(`^${PART}(?:\\.${PART})*$`);

/** Problems with the layer list (none when every entry is a well-formed path). */
export function layerPathProblems(layers: readonly string[] | undefined): ConfigProblem[] {
  if (!layers) return [];
  const bad = layers.filter((layer) => !LAYER_PATH.test(layer));
  if (bad.length === 0) return [];
  return [
    {
      variable: 'XAI_TARGET_LAYERS',
      value: JSON.stringify(layers),
      message: `unknown layer${bad.length === 1 ? '' : 's'} ${bad.map((b) => JSON.stringify(b)).join(', ')}: a layer path is submodule names and indices joined by dots, e.g. ["model.22"] (YOLO) or ["layer4"] (ResNet); it is looked up in the model, never evaluated`,
    },
  ];
}
