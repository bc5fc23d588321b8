/**
 * The comparison with the design's examples (test/helpers/design-contract.ts), which the
 * integration tests apply to every body and object real runs produce: it catches a rename, a
 * reshape and a changed type, and our own schemas accept the design's examples.
 */
import { describe, expect, it } from 'vitest';
import { ENDPOINTS, ValidationResponseSchema } from '../../src/callbacks/schemas.js';
import { DESIGN_EXAMPLES, designProblems, resultsDesignProblems } from '../helpers/design-contract.js';

const clone = <T>(v: T): T => JSON.parse(JSON.stringify(v)) as T;

describe('design examples', () => {
  it('each example matches itself, for the tasks its keys belong to', () => {
    expect(designProblems('validation', DESIGN_EXAMPLES.validation.example, 'object_detection')).toEqual([]);
    expect(designProblems('heartbeat', DESIGN_EXAMPLES.heartbeat.example, 'image_classification')).toEqual([]);
    expect(designProblems('metadata', DESIGN_EXAMPLES.metadata.example)).toEqual([]);
  });

  it('are valid bodies by our schemas (the runtime reads and writes the design’s own examples)', () => {
    const kinds = [
      'heartbeat',
      'event',
      'validation',
      'trainingDone',
      'inferenceProgress',
      'testRunDone',
      'inferenceJobDone',
      'exportProgress',
      'exportDone',
    ] as const;
    for (const kind of kinds) {
      const example = clone(DESIGN_EXAMPLES[kind].example) as Record<string, unknown>;
      if (kind === 'testRunDone') example.per_class_metrics = [{ class_id: 3, class_name: 'cat', precision: 0.9 }];
      const parsed = ENDPOINTS[kind].schema.safeParse(example);
      expect(parsed.success, `${kind}: ${parsed.error?.message}`).toBe(true);
    }
    expect(ValidationResponseSchema.parse(DESIGN_EXAMPLES.validationResponse.example)).toEqual({ status: 'ok', is_best: true });
  });

  it('catches a renamed field, a changed type and a flattened nesting', () => {
    const explanation = { ...clone(DESIGN_EXAMPLES.llmExplanation.example), alternatives: ['a', 'b'] } as Record<string, unknown>;
    delete explanation.alternative_considerations;
    expect(designProblems('llmExplanation', explanation)).toEqual(['llmExplanation: alternative_considerations is missing']);

    const metadata = clone(DESIGN_EXAMPLES.metadata.example) as Record<string, any>;
    metadata.optimization.quantization = 'dynamic';
    expect(designProblems('metadata', metadata)).toEqual([]);
    metadata.model.num_classes = '80';
    expect(designProblems('metadata', metadata)).toEqual(['metadata: model.num_classes is string, the design has number']);

    const results = {
      ...clone(DESIGN_EXAMPLES.results.example),
      task_type: 'image_classification',
      results: [{ image_id: '1', predictions: {}, ground_truth: null, evaluation: {}, xai: { method: 'gradcam', heatmap_path: null, max_activation: 0.9 } }],
    };
    expect(resultsDesignProblems(results)).toEqual(['resultsImage: image_path is missing', 'resultsXai: the statistics under "gradcam" are missing']);
  });

  it('reads pr_curves as a map by class name: any names, each curve shaped as the design’s', () => {
    const v = clone(DESIGN_EXAMPLES.validation.example) as Record<string, any>;
    v.pr_curves = { square: { precision: [1, 0.5], recall: [0.5, 1] }, circle: { precision: [1], recall: [null] } };
    expect(designProblems('validation', v, 'object_detection')).toEqual([]);
    v.pr_curves.circle = { precision: 0.5, recall: [1] };
    expect(designProblems('validation', v, 'object_detection')).toEqual(['validation: pr_curves.circle.precision is number, the design has array']);
  });

  it('requires task-specific keys only for their tasks; a metric may be null, a failed completion’s contents are not compared', () => {
    const beat = { epoch: 1, progress: 50, metrics: { loss: 0.3, learning_rate: null }, timestamp: '2025-01-10T12:34:56Z' };
    expect(designProblems('heartbeat', beat, 'object_detection')).toEqual([]);
    expect(designProblems('heartbeat', beat, 'image_classification')).toEqual(['heartbeat: metrics.accuracy is missing']);
    const failed = { status: 'failed', final_metrics: {}, checkpoint_path: null, error_message: 'boom', timestamp: '2025-01-10T12:34:56Z' };
    expect(designProblems('trainingDone', failed, 'image_classification')).toEqual([]);
    expect(designProblems('trainingDone', { ...failed, status: 'succeeded' }, 'image_classification')).toEqual([
      'trainingDone: final_metrics.best_epoch is missing',
      'trainingDone: final_metrics.best_loss is missing',
      'trainingDone: final_metrics.best_accuracy is missing',
      'trainingDone: final_metrics.total_time_seconds is missing',
    ]);
  });
});
