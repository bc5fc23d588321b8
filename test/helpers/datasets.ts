/** Puts a dataset folder into storage as the platform does: `datasets/{id}.zip` or the prefix `datasets/{id}/`. */
import { mkdtempSync, readdirSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import type { Storage } from '../../src/storage/types.js';
import { createZip } from '../../src/storage/zip.js';

function filesUnder(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push(p);
  }
  return out;
}

export async function uploadDataset(storage: Storage, datasetId: string, dir: string, as: 'zip' | 'prefix' = 'zip'): Promise<void> {
  if (as === 'zip') {
    const zip = join(mkdtempSync(join(tmpdir(), 'vt-zip-')), `${datasetId}.zip`);
    await createZip(dir, zip);
    await storage.uploadFile(zip, `datasets/${datasetId}.zip`);
    return;
  }
  await Promise.all(filesUnder(dir).map((f) => storage.uploadFile(f, `datasets/${datasetId}/${relative(dir, f).split('\\').join('/')}`)));
}
