/** "Did you mean …?" for a misspelt policy key or policy name. */

/** Levenshtein distance: the fewest one-character insertions, deletions and substitutions. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = previous[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1);
      current[j] = Math.min(previous[j] + 1, current[j - 1] + 1, substitution);
    }
    previous = current;
  }
  return previous[b.length];
}

/**
 * The candidate `name` was most likely meant to be, or undefined when none is close: case is
 * ignored (`timeoutMS` → `timeoutMs`), and a name may be off by a third of its length (at
 * least 2 edits; 1 for names of 3 characters or fewer), so `memory` finds `memoryMb` but `x`
 * finds nothing.
 */
export function closest(name: string, candidates: readonly string[]): string | undefined {
  const lower = name.toLowerCase();
  const limit = name.length <= 3 ? 1 : Math.max(2, Math.floor(name.length / 3));
  let best: { candidate: string; distance: number; exact: number } | undefined;
  for (const candidate of candidates) {
    const distance = editDistance(lower, candidate.toLowerCase());
    if (distance > limit) continue;
    // Among equally close candidates, the one that also matches in case wins.
    const exact = editDistance(name, candidate);
    if (!best || distance < best.distance || (distance === best.distance && exact < best.exact)) {
      best = { candidate, distance, exact };
    }
  }
  return best?.candidate;
}
