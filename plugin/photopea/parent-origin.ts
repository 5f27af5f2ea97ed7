// Whose messages the Photopea page reads: Photopea's origin. A test host page may stand in for
// Photopea by naming its own origin in the `parentOrigin` query parameter, honoured only when that is a
// loopback origin (a page on this machine, which could reach the daemon anyway); any other value is
// ignored, so a link cannot make the page obey a foreign site.
import { PHOTOPEA_ORIGIN } from '../../shared/protocol/index.js';

/** The daemon's CSP lets only these frame the page (routes/pages.ts). */
const LOOPBACK_ORIGIN = /^http:\/\/(localhost|127\.0\.0\.1):\d{1,5}$/;

export function expectedParentOrigin(search: string): string {
  const asked = new URLSearchParams(search).get('parentOrigin');
  if (asked !== null && LOOPBACK_ORIGIN.test(asked)) return asked;
  return PHOTOPEA_ORIGIN;
}
