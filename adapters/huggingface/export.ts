/** transformers checkpoints export exactly as timm's (adapters/timm/export.ts): one pixels -> logits module. */
import { torchModuleExport } from '../timm/export.js';

export const huggingfaceExport = torchModuleExport('huggingface');
