/**
 * The distributed settings (src/jobs/distributed.ts): the variables of torchrun, the Training
 * Operator and Kubeflow Trainer as one plan; every combination that cannot work refused naming
 * what would; and the Kubeflow manifests in deploy/kubeflow carrying a configuration that parses,
 * pod by pod, with the variables the operator adds.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { configFromEnv } from '../../src/config/env.js';
import { VARIABLES } from '../../src/config/variables.js';
import { ConfigError, ExitCode } from '../../src/errors.js';
import { RESUMABLE_EXITS } from '../../src/jobs/outcome.js';
import { distributedPlan, reportsJob } from '../../src/jobs/distributed.js';
import { PROJECT_ROOT } from '../../src/paths.js';

const base = {
  JOB_ID: 'job-1',
  TRACE_ID: 'trace-1',
  BACKEND_BASE_URL: 'http://127.0.0.1:9',
  CALLBACK_TOKEN: 'tok-very-secret-123',
  TASK_TYPE: 'image_classification',
  MODEL_NAME: 'resnet18',
  DATASET_ID: 'ds-1',
  EPOCHS: '3',
  BATCH_SIZE: '16',
  S3_ENDPOINT: 'http://127.0.0.1:8333',
  AWS_ACCESS_KEY_ID: 'AKIAEXAMPLEKEY',
  AWS_SECRET_ACCESS_KEY: 'super-secret-storage-key',
};

const train = (env: Record<string, string>) => configFromEnv('train', { ...base, ...env });

function problems(env: Record<string, string>, mode: 'train' | 'infer' | 'export' = 'train'): string[] {
  try {
    configFromEnv(mode, { ...base, ...env });
  } catch (e) {
    if (e instanceof ConfigError) return e.problems.map((p) => `${p.variable}: ${p.message}`);
    throw e;
  }
  return [];
}

describe('the plan', () => {
  it('one process without distributed variables: no plan, this process reports', () => {
    const c = train({ DEVICE: 'cpu' });
    expect(distributedPlan(c)).toBeUndefined();
    expect(reportsJob(c)).toBe(true);
  });

  it('DEVICE=0,1 is two processes on one node', () => {
    expect(distributedPlan(train({ DEVICE: '0,1' }))).toMatchObject({ nnodes: 1, nodeRank: 0, nprocPerNode: 2, worldSize: 2, reports: true });
  });

  it("Kubeflow Trainer's PET_ variables (TrainJob, torch-distributed runtime)", () => {
    const env = { PET_NNODES: '4', PET_NPROC_PER_NODE: '2', PET_NODE_RANK: '3', PET_MASTER_ADDR: 'job-node-0-0.job', PET_MASTER_PORT: '29400', DEVICE: '0,1' };
    const c = train(env);
    expect(distributedPlan(c)).toMatchObject({
      nnodes: 4,
      nodeRank: 3,
      nprocPerNode: 2,
      worldSize: 8,
      masterAddr: 'job-node-0-0.job',
      masterPort: 29400,
      reports: false,
    });
    expect(reportsJob(c)).toBe(false);
  });

  it('the join deadline (a node checking in) is its own, shorter than the rendezvous (which covers the downloads), and never longer', () => {
    const env = { NNODES: '2', NODE_RANK: '1', MASTER_ADDR: 'node-0', MASTER_PORT: '29400', DEVICE: 'cpu' };
    expect(distributedPlan(train(env))).toMatchObject({ rendezvousTimeoutSeconds: 900, joinTimeoutSeconds: 300, nodeTimeoutSeconds: 60 });
    expect(distributedPlan(train({ ...env, JOIN_TIMEOUT_SECONDS: '30' }))).toMatchObject({ joinTimeoutSeconds: 30 });
    expect(distributedPlan(train({ ...env, RENDEZVOUS_TIMEOUT_SECONDS: '120' }))).toMatchObject({ rendezvousTimeoutSeconds: 120, joinTimeoutSeconds: 120 });
  });

  it("the Training Operator's PyTorchJob variables: WORLD_SIZE counts processes, RANK is the pod's index", () => {
    const env = { MASTER_ADDR: 'job-master-0', MASTER_PORT: '23456', WORLD_SIZE: '4', RANK: '1', PET_NPROC_PER_NODE: '2', DEVICE: '0,1' };
    expect(distributedPlan(train(env))).toMatchObject({ nnodes: 2, nodeRank: 1, worldSize: 4, reports: false });
    expect(distributedPlan(train({ ...env, RANK: '0' }))?.reports).toBe(true);
  });

  it('NPROC_PER_NODE on the CPU: gloo processes', () => {
    expect(distributedPlan(train({ DEVICE: 'cpu', NPROC_PER_NODE: '2' }))).toMatchObject({ nprocPerNode: 2, worldSize: 2 });
  });
});

describe('what cannot work is refused, naming what would', () => {
  it('a batch that does not split evenly over the processes', () => {
    expect(problems({ DEVICE: 'cpu', NPROC_PER_NODE: '3', BATCH_SIZE: '16' })).toEqual([
      expect.stringMatching(/^BATCH_SIZE: .*multiple of 3, e\.g\. BATCH_SIZE=15 or 18/),
    ]);
  });

  it('a device list and a process count that disagree', () => {
    expect(problems({ DEVICE: '0,1', NPROC_PER_NODE: '4' })).toEqual([expect.stringMatching(/^NPROC_PER_NODE: is 4, but DEVICE=0,1 lists 2 GPUs/)]);
  });

  it('one named GPU for several processes, mps, gpu on a CPU', () => {
    expect(problems({ DEVICE: 'cuda:1', NPROC_PER_NODE: '2' })[0]).toMatch(/list the GPUs instead, e\.g\. DEVICE=0,1/);
    expect(problems({ DEVICE: 'mps', NPROC_PER_NODE: '2' })[0]).toMatch(/NPROC_PER_NODE=1/);
    expect(problems({ DEVICE: 'cpu', NPROC_PER_NODE: 'gpu' })[0]).toMatch(/give a number of CPU processes/);
  });

  it('several nodes without a rendezvous address, or a node rank outside the job', () => {
    const found = problems({ NNODES: '2', NODE_RANK: '2', DEVICE: 'cpu' });
    expect(found).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^NODE_RANK: is 2, but the job has NNODES=2 nodes \(0 to 1\)/),
        expect.stringMatching(/^MASTER_ADDR or PET_MASTER_ADDR: is required with NNODES=2/),
        expect.stringMatching(/^MASTER_PORT or PET_MASTER_PORT: is required with NNODES=2/),
      ]),
    );
  });

  it('WORLD_SIZE that disagrees with NNODES x NPROC_PER_NODE; an elastic node range', () => {
    expect(problems({ NNODES: '2', NPROC_PER_NODE: '2', WORLD_SIZE: '6', MASTER_ADDR: 'a', MASTER_PORT: '1', DEVICE: 'cpu' })[0]).toMatch(
      /^WORLD_SIZE: is 6, but NNODES=2 x NPROC_PER_NODE=2 is 4/,
    );
    expect(problems({ PET_NNODES: '1:4', DEVICE: 'cpu' })[0]).toMatch(/elastic ranges such as 1:4 are not supported/);
  });

  it('started under torchrun (LOCAL_RANK set): refused, saying how to run it instead', () => {
    expect(problems({ LOCAL_RANK: '0' })[0]).toMatch(/^LOCAL_RANK: .*run `vision-trainer train` directly in each pod/);
  });

  it('inference and export refuse a GPU list instead of using its first GPU silently', () => {
    const infer = { INFERENCE_TYPE: 'test_run', CHECKPOINT_PATH: 's3://b/c/best.pt', DEVICE: '0,1' };
    expect(problems(infer, 'infer')).toEqual([expect.stringMatching(/^DEVICE: .*inference runs on one device: name one, e\.g\. DEVICE=0/)]);
  });
});

describe('deploy/kubeflow', () => {
  const load = (name: string) => parse(readFileSync(join(PROJECT_ROOT, 'deploy/kubeflow', name), 'utf8'));
  const envOf = (list: Array<{ name: string; value?: string; valueFrom?: unknown }>) =>
    Object.fromEntries(list.map((e) => [e.name, e.value ?? `secret-of-${e.name}`])) as Record<string, string>;
  const required = VARIABLES.filter((v) => v.required && v.modes.includes('train')).map((v) => v.env[0]!);

  it('PyTorchJob: every pod parses with what the Training Operator adds; node 0 (Master) alone reports', () => {
    const job = load('pytorchjob.yaml');
    expect(job).toMatchObject({ apiVersion: 'kubeflow.org/v1', kind: 'PyTorchJob' });
    const nproc = Number(job.spec.nprocPerNode);
    const specs = job.spec.pytorchReplicaSpecs;
    const pods = [specs.Master, ...Array.from({ length: specs.Worker.replicas }, () => specs.Worker)];
    expect(specs.Master.replicas).toBe(1);
    pods.forEach((spec, rank) => {
      expect(spec.restartPolicy).toBe('ExitCode');
      const container = spec.template.spec.containers.find((c: { name: string }) => c.name === 'pytorch');
      expect(container.resources.limits['nvidia.com/gpu']).toBe(nproc);
      const env = envOf(container.env);
      for (const name of required) expect(env, name).toHaveProperty(name);
      expect(env.RETRY_EXIT_CODE_BASE).toBe('128');
      // What the operator sets in each pod.
      const injected = {
        MASTER_ADDR: 'job-master-0',
        MASTER_PORT: '23456',
        WORLD_SIZE: String(pods.length * nproc),
        RANK: String(rank),
        PET_NPROC_PER_NODE: String(nproc),
        PET_NNODES: String(pods.length),
      };
      const config = configFromEnv('train', { ...env, ...injected });
      expect(distributedPlan(config)).toMatchObject({ nnodes: pods.length, nodeRank: rank, nprocPerNode: nproc, reports: rank === 0 });
    });
  });

  it('TrainJob: every node parses with what the torch-distributed runtime adds; node 0 alone reports', () => {
    const job = load('trainjob.yaml');
    expect(job).toMatchObject({ apiVersion: 'trainer.kubeflow.org/v1alpha1', kind: 'TrainJob', spec: { runtimeRef: { name: 'torch-distributed' } } });
    const { numNodes, numProcPerNode } = job.spec.trainer;
    expect(job.spec.trainer.resourcesPerNode.limits['nvidia.com/gpu']).toBe(numProcPerNode);
    const env = envOf(job.spec.trainer.env);
    for (const name of required) expect(env, name).toHaveProperty(name);
    for (let rank = 0; rank < numNodes; rank++) {
      const injected = {
        PET_NNODES: String(numNodes),
        PET_NPROC_PER_NODE: String(numProcPerNode),
        PET_NODE_RANK: String(rank),
        PET_MASTER_ADDR: 'job-node-0-0.job',
        PET_MASTER_PORT: '29400',
      };
      const config = configFromEnv('train', { ...env, ...injected });
      expect(distributedPlan(config)).toMatchObject({ nnodes: numNodes, nodeRank: rank, nprocPerNode: numProcPerNode, reports: rank === 0 });
    }
  });

  it('with RETRY_EXIT_CODE_BASE=128 the failures a retry can fix land in the restarted range (128-255), the others below it', () => {
    for (const code of Object.values(ExitCode).filter((c) => c !== ExitCode.ok)) {
      const shifted = RESUMABLE_EXITS.has(code) && code < 128 ? code + 128 : code;
      expect(shifted >= 128, `exit code ${code}`).toBe(RESUMABLE_EXITS.has(code));
    }
  });
});
