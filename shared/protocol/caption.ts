// The template caption "a photo of a {source}" (docs/DESIGN.md §3 step 2), written here once because
// both sides write it: the daemon uses it when no captioner is installed, and the panel shows it in
// its Caption field when the daemon answers a caption request with E_MODEL_MISSING.

const DETERMINERS = /^(a|an|the|this|that|my|your|our|their|his|her|some|one|two|three)\s/;
// u read as "you" (unicorn, user, ukulele), eu/ew (european, ewe), one-: "a".
const A_BEFORE_VOWEL = /^(u[bcdfghjklmnpqrstvwxyz][aeiou]|eu|ew|one\b|once\b)/;
// Silent h (hour, honest, honour, heir, herb): "an".
const AN_BEFORE_H = /^(hour|honest|honor|honour|heir|herb)/;

/** "a" or "an" for a word, by its sound as far as spelling shows (heuristic). */
export function indefiniteArticle(word: string): 'a' | 'an' {
  const w = word.trim().toLowerCase();
  if (AN_BEFORE_H.test(w)) return 'an';
  if (/^[aeiou]/.test(w) && !A_BEFORE_VOWEL.test(w)) return 'an';
  return 'a';
}

/** Whether a phrase starts with its own determiner ("the eiffel tower", "my dog"). */
export function hasDeterminer(phrase: string): boolean {
  return DETERMINERS.test(phrase.trim().replace(/\s+/g, ' ').toLowerCase());
}

/** The subject as it appears in a sentence: "a cat", "an elephant", "the eiffel tower" (kept). */
export function subjectPhrase(word: string): string {
  const w = word.trim().replace(/\s+/g, ' ');
  return hasDeterminer(w) ? w : `${indefiniteArticle(w)} ${w}`;
}

/** The caption used when neither the designer nor a captioner wrote one: "a photo of a cat". */
export function templateCaption(source: string): string {
  return `a photo of ${subjectPhrase(source)}`;
}
