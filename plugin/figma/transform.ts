// 2×3 affine transforms as Figma writes them: [[a, c, e], [b, d, f]] maps (x, y) to
// (a·x + c·y + e, b·x + d·y + f). Plain tuples, so this file needs no Figma types.

export type Affine = [[number, number, number], [number, number, number]];

export const IDENTITY: Affine = [
  [1, 0, 0],
  [0, 1, 0],
];

/** p ∘ q: first q, then p. */
export function multiply(p: Affine, q: Affine): Affine {
  const [[a1, c1, e1], [b1, d1, f1]] = p;
  const [[a2, c2, e2], [b2, d2, f2]] = q;
  return [
    [a1 * a2 + c1 * b2, a1 * c2 + c1 * d2, a1 * e2 + c1 * f2 + e1],
    [b1 * a2 + d1 * b2, b1 * c2 + d1 * d2, b1 * e2 + d1 * f2 + f1],
  ];
}

/** The inverse transform; throws for a singular one (a layer scaled to nothing). */
export function invert(t: Affine): Affine {
  const [[a, c, e], [b, d, f]] = t;
  const det = a * d - b * c;
  if (Math.abs(det) < 1e-12) throw new Error('The layer has a degenerate transform.');
  return [
    [d / det, -c / det, (c * f - d * e) / det],
    [-b / det, a / det, (b * e - a * f) / det],
  ];
}

export function translation(x: number, y: number): Affine {
  return [
    [1, 0, x],
    [0, 1, y],
  ];
}

/** True when the transform neither rotates, skews nor flips (a pure translation). */
export function isAxisAligned(t: Affine, epsilon = 1e-6): boolean {
  return Math.abs(t[0][1]) < epsilon && Math.abs(t[1][0]) < epsilon && t[0][0] > 0 && t[1][1] > 0;
}
