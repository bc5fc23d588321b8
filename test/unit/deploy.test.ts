/**
 * The container contract stays in step with the code: every exit code is in the README table and
 * in exactly one podFailurePolicy rule (retry or fail), and the image and the Job keep least
 * privilege (non-root, read-only root filesystem, no capabilities).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { ExitCode } from '../../src/errors.js';
import { RESUMABLE_EXITS } from '../../src/jobs/outcome.js';
import { PROJECT_ROOT } from '../../src/paths.js';

const job = parse(readFileSync(join(PROJECT_ROOT, 'deploy/k8s/training-job.yaml'), 'utf8'));
const pod = job.spec.template.spec;
const container = pod.containers.find((c: { name: string }) => c.name === 'trainer');
const dockerfile = readFileSync(join(PROJECT_ROOT, 'Dockerfile'), 'utf8');
const readme = readFileSync(join(PROJECT_ROOT, 'README.md'), 'utf8');

/** Failures a retry of the same pod may fix: it continues what the failed attempt stored. */
const RETRIED = RESUMABLE_EXITS;
/** SIGKILL (the OOM killer, a lost node): the process could not say why, a retry resumes. */
const KILLED = 137;

describe('exit codes', () => {
  const codes = Object.values(ExitCode).filter((c) => c !== ExitCode.ok);

  it('each failure code is in exactly one podFailurePolicy rule: retry only what a retry can fix', () => {
    const rules = job.spec.podFailurePolicy.rules.filter((r: { onExitCodes?: unknown }) => r.onExitCodes);
    const actionOf = (code: number) =>
      rules.filter((r: { onExitCodes: { values: number[] } }) => r.onExitCodes.values.includes(code)).map((r: { action: string }) => r.action);
    for (const code of codes) expect(actionOf(code), `exit code ${code}`).toEqual([RETRIED.has(code) ? 'Count' : 'FailJob']);
    expect(actionOf(ExitCode.unsafeArtifact)).toEqual(['FailJob']);
    expect(actionOf(ExitCode.storageAccessDenied)).toEqual(['FailJob']);
    expect(actionOf(KILLED)).toEqual(['Count']);
    expect(RETRIED).toEqual(new Set([ExitCode.storage, ExitCode.callbackUndelivered, ExitCode.nodeLost, ExitCode.terminated]));
  });

  it('each code has a row in the README table', () => {
    for (const code of codes) expect(readme, `exit code ${code}`).toMatch(new RegExp(`^\\| ${code} \\| .+ \\| (retry|fail the Job) \\|$`, 'm'));
  });
});

describe('least privilege', () => {
  it('the image runs as a numeric non-root user, with a root-owned application', () => {
    const user = /^USER (\d+)(?::(\d+))?$/m.exec(dockerfile);
    expect(user, 'USER line').not.toBeNull();
    expect(Number(user![1])).toBeGreaterThan(0);
    expect(dockerfile).not.toMatch(/chown[^\n]*\/app/);
    expect(dockerfile.lastIndexOf('USER ')).toBeGreaterThan(dockerfile.lastIndexOf('RUN '));
  });

  it('the Job runs non-root, without privilege escalation or capabilities, on a read-only root filesystem', () => {
    expect(pod.securityContext).toMatchObject({ runAsNonRoot: true, seccompProfile: { type: 'RuntimeDefault' } });
    expect(pod.automountServiceAccountToken).toBe(false);
    expect(container.securityContext).toMatchObject({
      runAsNonRoot: true,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ['ALL'] },
      seccompProfile: { type: 'RuntimeDefault' },
    });
    const mounts = Object.fromEntries(container.volumeMounts.map((m: { name: string; mountPath: string }) => [m.mountPath, m.name]));
    expect(mounts['/workspace']).toBeDefined();
    expect(mounts['/tmp']).toBeDefined();
    const workDir = container.env.find((e: { name: string }) => e.name === 'WORK_DIR')?.value ?? /WORK_DIR=(\S+)/.exec(dockerfile)?.[1];
    expect(workDir).toBe('/workspace');
    for (const name of Object.values(mounts)) expect(pod.volumes.map((v: { name: string }) => v.name)).toContain(name);
  });
});
