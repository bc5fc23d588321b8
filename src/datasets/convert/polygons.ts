/**
 * A YOLO segmentation label holds one polygon per object. An object in several pieces is
 * joined into one outline exactly as ultralytics' own COCO converter does
 * (`ultralytics.data.converter.merge_multi_segment`): consecutive pieces are connected at
 * their closest points by a thin two-way seam, so the filled mask equals the pieces.
 */

type Point = [number, number];

function toPoints(flat: readonly number[]): Point[] {
  const points: Point[] = [];
  for (let i = 0; i + 1 < flat.length; i += 2) points.push([flat[i] as number, flat[i + 1] as number]);
  return points;
}

/** Indexes of the closest pair between two point lists; the first such pair in row-major order, as numpy's argmin. */
function closestPair(a: readonly Point[], b: readonly Point[]): [number, number] {
  let best = Infinity;
  let pair: [number, number] = [0, 0];
  for (let i = 0; i < a.length; i++) {
    const [ax, ay] = a[i] as Point;
    for (let j = 0; j < b.length; j++) {
      const [bx, by] = b[j] as Point;
      const d = (ax - bx) ** 2 + (ay - by) ** 2;
      if (d < best) {
        best = d;
        pair = [i, j];
      }
    }
  }
  return pair;
}

/** numpy.roll(points, -shift, axis=0) */
function rollLeft<T>(items: readonly T[], shift: number): T[] {
  const n = items.length;
  const k = ((shift % n) + n) % n;
  return [...items.slice(k), ...items.slice(0, k)];
}

/** The merged outline as a flat `[x1, y1, x2, y2, ...]` list (one polygon passes through unchanged). */
export function mergeMultiSegment(polygons: readonly (readonly number[])[]): number[] {
  if (polygons.length === 1) return [...(polygons[0] as readonly number[])];
  const segments = polygons.map(toPoints);
  const indexes: number[][] = segments.map(() => []);
  for (let i = 1; i < segments.length; i++) {
    const [i1, i2] = closestPair(segments[i - 1] as Point[], segments[i] as Point[]);
    (indexes[i - 1] as number[]).push(i1);
    (indexes[i] as number[]).push(i2);
  }

  const last = segments.length - 1;
  const pieces: Point[][] = [];
  // Forward pass: every piece rotated to start at its first joint and closed; middle pieces
  // contribute the stretch between their two joints.
  for (let i = 0; i < segments.length; i++) {
    let idx = indexes[i] as number[];
    let segment = segments[i] as Point[];
    if (idx.length === 2 && (idx[0] as number) > (idx[1] as number)) {
      idx = idx.map((x) => segment.length - 1 - x);
      segment = [...segment].reverse();
    }
    segment = rollLeft(segment, idx[0] as number);
    segment = [...segment, segment[0] as Point];
    segments[i] = segment;
    if (i === 0 || i === last) pieces.push(segment);
    else pieces.push(segment.slice(0, (idx[1] as number) - (idx[0] as number) + 1));
  }
  // Backward pass: middle pieces contribute the rest of their outline on the way back.
  for (let i = last; i >= 0; i--) {
    if (i === 0 || i === last) continue;
    const idx = indexes[i] as number[];
    pieces.push((segments[i] as Point[]).slice(Math.abs((idx[1] as number) - (idx[0] as number))));
  }
  return pieces.flat(2);
}
