// The caption c of the input image (DESIGN.md §3 step 2): the user's when given, else (until a
// captioning model is installable) the template "a photo of a {source}" with the right article.
import { subjectPhrase } from './directions/sentence-bank.js';

export type CaptionOrigin = 'user' | 'template';

export function captionFor(source: string, caption?: string): { caption: string; origin: CaptionOrigin } {
  const given = caption?.replace(/\s+/g, ' ').trim();
  if (given) return { caption: given, origin: 'user' };
  return { caption: `a photo of ${subjectPhrase(source)}`, origin: 'template' };
}
