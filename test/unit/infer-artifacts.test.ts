/** Output keys, the visualisation sample, and layer-path checks of inference jobs. */
import { describe, expect, it } from 'vitest';
import { artifactName, inSample, jobPrefix, resultsKey, visualizationsPrefix, xaiPrefix } from '../../src/jobs/infer/artifacts.js';
import { layerPathProblems } from '../../src/jobs/infer/layers.js';

const sample = (total: number, max: number) => Array.from({ length: total }, (_, i) => i).filter((i) => inSample(i, total, max));

describe('output keys', () => {
  it('follow the storage layout: {test_runs|inference_jobs}/{JOB_ID}/...', () => {
    expect(jobPrefix('test_run', 'j1')).toBe('test_runs/j1');
    expect(resultsKey('inference_job', 'j1')).toBe('inference_jobs/j1/results.json');
    expect(visualizationsPrefix('test_run', 'j1')).toBe('test_runs/j1/visualizations/');
    expect(xaiPrefix('inference_job', 'j1')).toBe('inference_jobs/j1/xai/');
  });

  it('name each picture by index and a safe stem of the image name', () => {
    expect(artifactName(7, 'batch 1/IMG 001.jpeg')).toBe('000007-IMG_001.png');
    expect(artifactName(0, '../../etc/passwd')).toBe('000000-passwd.png');
    expect(artifactName(12, '.hidden.png')).toBe('000012-hidden.png');
    expect(artifactName(3, 'ünïcødé.png')).toBe('000003-n_c_d_.png');
    expect(artifactName(3, '...png')).toBe('000003.png');
  });
});

describe('the visualisation sample', () => {
  it('is every image when they fit', () => {
    expect(sample(5, 5)).toEqual([0, 1, 2, 3, 4]);
    expect(sample(3, 200)).toEqual([0, 1, 2]);
  });

  it('is exactly max images spread evenly over the list, the same every time', () => {
    expect(sample(10, 4)).toEqual([0, 2, 5, 7]);
    for (const [total, max] of [
      [1000, 7],
      [101, 100],
      [12345, 200],
      [7, 1],
    ] as const) {
      const s = sample(total, max);
      expect(s).toHaveLength(max);
      expect(s[0]).toBe(0);
      const gaps = s.slice(1).map((v, i) => v - s[i]!);
      expect(Math.max(...gaps, 0) - Math.min(...gaps, Infinity)).toBeLessThanOrEqual(1);
      expect(sample(total, max)).toEqual(s);
    }
  });

  it('is empty for MAX_VISUALIZATIONS=0', () => {
    expect(sample(10, 0)).toEqual([]);
  });
});

describe('XAI_TARGET_LAYERS paths', () => {
  it('accepts names and indices joined by dots', () => {
    expect(layerPathProblems(['model.22', 'layer4', 'backbone.layer4', 'blocks.-1.norm1', 'stages.3.blocks.2'])).toEqual([]);
    expect(layerPathProblems(undefined)).toEqual([]);
  });

  it('rejects code and anything that is not a path, naming each bad entry as an unknown layer', () => {
    const injected = '__import__("os").system("touch /tmp/pwned")';
    for (const bad of [injected, 'model[22]', 'model.22 ', 'a..b', '.model', 'model.', 'x;y', 'model.__class__.__init__()']) {
      const problems = layerPathProblems(['model.22', bad]);
      expect(problems).toHaveLength(1);
      expect(problems[0]!.variable).toBe('XAI_TARGET_LAYERS');
      expect(problems[0]!.message.startsWith(`unknown layer ${JSON.stringify(bad)}: `)).toBe(true);
    }
  });
});
