/**
 * Training on several processes and machines: which part of the job this process is, and
 * whether it reports. One `vision-trainer train` runs per node (a machine, or a pod of a
 * Kubeflow PyTorchJob/TrainJob), each with the same configuration plus its NODE_RANK. Its Python
 * interpreter starts NPROC_PER_NODE workers with torch's elastic launcher, and the nodes meet in
 * torch's static rendezvous at MASTER_ADDR:MASTER_PORT, so global rank 0 is on node 0
 * (python/vision_trainer/common/distributed.py).
 *
 * Exactly one process in the job reports: node 0's. It sends every callback, uploads every
 * checkpoint (written once, by global rank 0) and the log, and completes the job. The other nodes
 * download the dataset, train, and send nothing; their failures reach node 0 through the process
 * group and the rendezvous store, and node 0's one failed completion names the node at fault.
 *
 * BATCH_SIZE is the global batch, for every framework: each of the NNODES x NPROC_PER_NODE
 * processes takes BATCH_SIZE / processes images per step (ultralytics' own rule), so a job
 * trains the same on one GPU or many and LEARNING_RATE keeps its meaning.
 */
import { createServer } from 'node:net';
import { type PythonBridge, pythonEntry } from '../bridge/python.js';
import type { TrainConfig } from '../config/schema.js';
import {
  AnnounceFailureAnswerSchema,
  AnnounceFailureParamsSchema,
  CheckInAnswerSchema,
  CheckInParamsSchema,
  type DistributedParams,
} from '../frameworks/protocol.js';

/** The raw variables (src/config/variables.ts, group Distributed). */
export interface DistributedSettings {
  nprocPerNode?: number | 'auto' | 'gpu' | undefined;
  nnodes?: number | undefined;
  nodeRank?: number | undefined;
  masterAddr?: string | undefined;
  masterPort?: number | undefined;
  worldSize?: number | undefined;
  rank?: number | undefined;
  localRank?: number | undefined;
  rendezvousTimeoutSeconds: number;
  joinTimeoutSeconds: number;
  nodeTimeoutSeconds: number;
}

/** This node's part of a training on several processes. */
export interface DistributedPlan {
  nnodes: number;
  nodeRank: number;
  /** A number, or resolved on the node from its GPUs ("auto", "gpu"). */
  nprocPerNode: number | 'auto' | 'gpu';
  /** nnodes x nprocPerNode when both are numbers. */
  worldSize: number | undefined;
  masterAddr: string;
  /** Undefined on a single node without MASTER_PORT: a free port is taken when training starts. */
  masterPort: number | undefined;
  rendezvousTimeoutSeconds: number;
  /** JOIN_TIMEOUT_SECONDS, at most the rendezvous timeout (which also covers the dataset downloads). */
  joinTimeoutSeconds: number;
  nodeTimeoutSeconds: number;
  /** Node 0: callbacks, checkpoint and log uploads, the outcome. */
  reports: boolean;
}

export interface DistributedProblem {
  /** The config path of the variable at fault (e.g. distributed.nodeRank, batchSize, device). */
  path: string;
  message: string;
}

const gpuList = (device: string): string[] | undefined => (/^\d+(,\d+)*$/.test(device) ? device.split(',') : undefined);

/** NNODES, else the Training Operator's WORLD_SIZE divided by the processes per node. */
function nodeCount(s: DistributedSettings, nproc: number | 'auto' | 'gpu'): number | undefined {
  if (s.nnodes !== undefined) return s.nnodes;
  if (s.worldSize === undefined) return 1;
  return typeof nproc === 'number' && s.worldSize % nproc === 0 ? s.worldSize / nproc : undefined;
}

function processesPerNode(s: DistributedSettings, device: string): number | 'auto' | 'gpu' {
  return s.nprocPerNode ?? gpuList(device)?.length ?? 1;
}

/**
 * Everything about the distributed settings that can be judged without the machine (the Python
 * launcher checks the GPUs it finds): every problem, each naming what would work.
 */
export function distributedProblems(c: { distributed?: DistributedSettings; device?: string; batchSize?: number }): DistributedProblem[] {
  const s = c.distributed;
  const device = typeof c.device === 'string' ? c.device : 'auto';
  if (!s || typeof s !== 'object') return [];
  const problems: DistributedProblem[] = [];
  const add = (path: string, message: string) => problems.push({ path: `distributed.${path}`, message });
  if (s.localRank !== undefined) {
    add(
      'localRank',
      "is set: this process is a torchrun worker. vision-trainer starts its workers itself with torch's elastic launcher: run `vision-trainer train` directly in each pod (NNODES, NODE_RANK, MASTER_ADDR, MASTER_PORT, NPROC_PER_NODE), not under torchrun",
    );
    return problems;
  }
  const nproc = processesPerNode(s, device);
  const list = gpuList(device);
  if (list && typeof nproc === 'number' && nproc !== list.length) {
    add(
      'nprocPerNode',
      `is ${nproc}, but DEVICE=${device} lists ${list.length} GPU${list.length === 1 ? '' : 's'}: one process runs per GPU, so set NPROC_PER_NODE=${list.length} or list ${nproc} GPUs in DEVICE`,
    );
  }
  const many = nproc !== 1;
  if (device === 'mps' && many)
    add(
      'nprocPerNode',
      'DEVICE=mps trains in one process (there is no multi-process backend for Apple GPUs): use NPROC_PER_NODE=1, or DEVICE=cpu with several CPU processes',
    );
  if (/^cuda:\d+$/.test(device) && many)
    add(
      'nprocPerNode',
      `DEVICE=${device} names one GPU for ${nproc === 'auto' || nproc === 'gpu' ? 'several' : nproc} processes: list the GPUs instead, e.g. DEVICE=0,1`,
    );
  if (device === 'cpu' && nproc === 'gpu') add('nprocPerNode', 'is gpu (one process per GPU) but DEVICE=cpu: give a number of CPU processes, or DEVICE=auto');

  const nnodes = nodeCount(s, nproc);
  if (nnodes === undefined) {
    const why = typeof nproc === 'number' ? `is not a multiple of NPROC_PER_NODE=${nproc}` : `cannot give the node count with NPROC_PER_NODE=${nproc}`;
    add('worldSize', `${why}: set NNODES (PET_NNODES) to the number of nodes`);
    return problems;
  }
  if (nnodes > 1 && device === 'mps') add('nnodes', 'DEVICE=mps cannot train across machines: use DEVICE=cuda nodes, or NNODES=1');
  if (s.nnodes !== undefined && s.worldSize !== undefined && typeof nproc === 'number' && s.worldSize !== nnodes * nproc) {
    add(
      'worldSize',
      `is ${s.worldSize}, but NNODES=${nnodes} x NPROC_PER_NODE=${nproc} is ${nnodes * nproc} processes: make them agree (WORLD_SIZE counts every process of the job)`,
    );
  }
  const nodeRank = s.nodeRank ?? s.rank ?? 0;
  if (nodeRank >= nnodes)
    add(s.nodeRank !== undefined ? 'nodeRank' : 'rank', `is ${nodeRank}, but the job has NNODES=${nnodes} node${nnodes === 1 ? '' : 's'} (0 to ${nnodes - 1})`);
  if (nnodes > 1 && !s.masterAddr) add('masterAddr', `is required with NNODES=${nnodes}: the host name of node 0 (Kubeflow sets it)`);
  if (nnodes > 1 && s.masterPort === undefined) add('masterPort', `is required with NNODES=${nnodes}: the rendezvous port on node 0 (Kubeflow sets it)`);

  const world = typeof nproc === 'number' ? nnodes * nproc : undefined;
  const batch = c.batchSize;
  if (world !== undefined && world > 1 && typeof batch === 'number' && batch % world !== 0) {
    const lower = Math.floor(batch / world) * world;
    const upper = lower + world;
    const which = lower > 0 ? `BATCH_SIZE=${lower} or ${upper}` : `BATCH_SIZE=${upper}`;
    problems.push({
      path: 'batchSize',
      message: `is the global batch, split evenly over ${world} processes (NNODES=${nnodes} x NPROC_PER_NODE=${nproc}): use a multiple of ${world}, e.g. ${which}`,
    });
  }
  return problems;
}

/** This process's part of the job, or undefined for a single-process training. */
export function distributedPlan(config: Pick<TrainConfig, 'device' | 'distributed'>): DistributedPlan | undefined {
  const s = config.distributed;
  const nproc = processesPerNode(s, config.device);
  const nnodes = nodeCount(s, nproc) ?? 1;
  if (nnodes === 1 && nproc === 1) return undefined;
  const nodeRank = s.nodeRank ?? s.rank ?? 0;
  return {
    nnodes,
    nodeRank,
    nprocPerNode: nproc,
    worldSize: typeof nproc === 'number' ? nnodes * nproc : undefined,
    masterAddr: s.masterAddr ?? '127.0.0.1',
    masterPort: s.masterPort,
    rendezvousTimeoutSeconds: s.rendezvousTimeoutSeconds,
    joinTimeoutSeconds: Math.min(s.joinTimeoutSeconds, s.rendezvousTimeoutSeconds),
    nodeTimeoutSeconds: s.nodeTimeoutSeconds,
    reports: nodeRank === 0,
  };
}

/** Whether this process reports the job (false on the nodes other than node 0). */
export const reportsJob = (config: Pick<TrainConfig, 'device' | 'distributed'>): boolean => distributedPlan(config)?.reports ?? true;

/** A TCP port nothing listens on now, for a single node's rendezvous. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * The rendezvous part of this node's DistributedParams: what every node agrees on, the timeouts,
 * and this node's rank (the launch adds its events socket and stop file).
 */
export function rendezvousParams(
  plan: DistributedPlan,
  runId: string,
  masterPort: number,
  local: { eventsSocket: string | null; stopFile: string } = { eventsSocket: null, stopFile: '' },
): DistributedParams {
  return {
    nnodes: plan.nnodes,
    node_rank: plan.nodeRank,
    nproc_per_node: plan.nprocPerNode,
    master_addr: plan.masterAddr,
    master_port: masterPort,
    run_id: runId,
    rendezvous_timeout_seconds: plan.rendezvousTimeoutSeconds,
    join_timeout_seconds: plan.joinTimeoutSeconds,
    node_timeout_seconds: plan.nodeTimeoutSeconds,
    events_socket: local.eventsSocket,
    stop_file: local.stopFile,
  };
}

const CHECK_IN = pythonEntry('vision_trainer.common.distributed', 'check_in', CheckInParamsSchema, CheckInAnswerSchema);

/**
 * A node of a multi-node job checks in as soon as its Python runs, before the dataset download:
 * node 0 hosts the rendezvous store, and every node keeps a heartbeat in it until training ends.
 * A node that dies before it joins (killed during its download, without a word) is then noticed
 * by its silence (NODE_TIMEOUT_SECONDS), one that never starts after JOIN_TIMEOUT_SECONDS, instead
 * of at the end of RENDEZVOUS_TIMEOUT_SECONDS; the other nodes notice node 0's store going away.
 */
export async function checkIn(bridge: PythonBridge, plan: DistributedPlan | undefined, jobId: string): Promise<void> {
  if (!plan || plan.nnodes < 2 || plan.masterPort === undefined) return;
  await bridge.call(CHECK_IN, { distributed: rendezvousParams(plan, jobId, plan.masterPort) });
}

const ANNOUNCE_FAILURE = pythonEntry('vision_trainer.common.distributed', 'announce', AnnounceFailureParamsSchema, AnnounceFailureAnswerSchema, {
  long: true,
});

/**
 * A node other than node 0 whose job failed or was stopped before its launcher joined the
 * rendezvous (a download, the dataset, the preflight: what node 0 cannot see) leaves its reason
 * in node 0's rendezvous store, so node 0 fails the job at once with this reason and exit code
 * instead of noticing only this node's silence. A node that checked in writes it at once; one
 * whose check-in has not reached node 0's store yet waits for it: a failure up to
 * JOIN_TIMEOUT_SECONDS, a stop only `stopWaitSeconds` (the stop's grace period bounds it; a note
 * lost then still ends node 0's wait, by this node's silence or its missing check-in). Whether
 * node 0 got it.
 */
export async function announceToNodeZero(
  bridge: PythonBridge,
  plan: DistributedPlan,
  jobId: string,
  failure: { stopped: boolean; message: string; exitCode: number; stopWaitSeconds: number },
): Promise<boolean> {
  if (plan.reports || plan.masterPort === undefined) return false;
  const answer = await bridge.call(ANNOUNCE_FAILURE, {
    distributed: rendezvousParams(plan, jobId, plan.masterPort),
    kind: failure.stopped ? 'stopped' : 'failed',
    message: failure.message,
    exit_code: failure.exitCode,
    wait_seconds: failure.stopped ? failure.stopWaitSeconds : plan.joinTimeoutSeconds,
  });
  return answer.delivered;
}
