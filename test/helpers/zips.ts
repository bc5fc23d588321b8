/**
 * Writes a zip by hand, byte for byte, because well-behaved zip libraries (yazl included)
 * refuse to produce the malicious and unusual archives these tests need.
 */
import { crc32, deflateRawSync } from 'node:zlib';

export interface RawEntry {
  name: string;
  data: string | Buffer;
  /** Unix mode stored in the external attributes, e.g. 0o120777 for a symlink. */
  mode?: number;
  /** Deflate the data; `declaredSize` may then lie about the inflated size. */
  deflate?: boolean;
  declaredSize?: number;
  /** Another name in the local header than in the central directory. */
  localName?: string;
  /** A wrong CRC-32 in both headers. */
  crc?: number;
  /** Sizes and CRC in a data descriptor after the data (flag bit 3), zeros in the local header, as streaming zippers write. */
  dataDescriptor?: boolean;
  /** The central directory points at this earlier entry's local header instead (overlapping entries). */
  sameDataAs?: number;
}

export function rawZip(entries: readonly RawEntry[]): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  const offsets: number[] = [];
  let offset = 0;
  for (const entry of entries) {
    const data = Buffer.from(entry.data);
    const stored = entry.deflate ? deflateRawSync(data) : data;
    const name = Buffer.from(entry.name, 'utf8');
    const localName = Buffer.from(entry.localName ?? entry.name, 'utf8');
    const size = entry.declaredSize ?? data.length;
    const crc = entry.crc ?? crc32(data);
    const flags = 0x0800 | (entry.dataDescriptor ? 0x0008 : 0); // UTF-8 names
    const method = entry.deflate ? 8 : 0;
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(0, 10);
    local.writeUInt16LE(0x21, 12); // 1980-01-01
    local.writeUInt32LE(entry.dataDescriptor ? 0 : crc, 14);
    local.writeUInt32LE(entry.dataDescriptor ? 0 : stored.length, 18);
    local.writeUInt32LE(entry.dataDescriptor ? 0 : size, 22);
    local.writeUInt16LE(localName.length, 26);
    local.writeUInt16LE(0, 28);
    const descriptor = Buffer.alloc(entry.dataDescriptor ? 16 : 0);
    if (entry.dataDescriptor) {
      descriptor.writeUInt32LE(0x08074b50, 0);
      descriptor.writeUInt32LE(crc, 4);
      descriptor.writeUInt32LE(stored.length, 8);
      descriptor.writeUInt32LE(size, 12);
    }
    const central = Buffer.alloc(46);
    central.writeUInt32LE(0x02014b50, 0);
    central.writeUInt16LE((3 << 8) | 20, 4); // made by Unix: external attributes hold a mode
    central.writeUInt16LE(20, 6);
    central.writeUInt16LE(flags, 8);
    central.writeUInt16LE(method, 10);
    central.writeUInt16LE(0, 12);
    central.writeUInt16LE(0x21, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(stored.length, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    central.writeUInt32LE(((entry.mode ?? 0o100644) << 16) >>> 0, 38);
    central.writeUInt32LE(entry.sameDataAs === undefined ? offset : (offsets[entry.sameDataAs] as number), 42);
    offsets.push(offset);
    if (entry.sameDataAs === undefined) {
      locals.push(local, localName, stored, descriptor);
      offset += local.length + localName.length + stored.length + descriptor.length;
    }
    centrals.push(central, name);
  }
  const directory = Buffer.concat(centrals);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...locals, directory, end]);
}

/** Uniform 16-bit value → byte, exponentially skewed (entropy about 7.3 bits, like image data to deflate). */
const SKEW = Uint8Array.from({ length: 65536 }, (_, u) => Math.min(255, Math.floor(-Math.log(1 - (u + 0.5) / 65536) * 40)));

/** Bytes that look like image data to deflate: skewed, mostly incompressible, reproducible. */
export function pseudoImageBytes(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < length; i += 2) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out[i] = SKEW[state & 0xffff] as number;
    if (i + 1 < length) out[i + 1] = SKEW[state >>> 16] as number;
  }
  return out;
}
