// Whose messages the Photopea page reads: Photopea's origin. A test host page may stand in for
// Photopea by naming its own origin in the `parentOrigin` query parameter, honoured only when that is
// one of the daemon's own origins: a loopback name on the port this page was served from. That is the
// daemon's rule for callers (daemon/server/origin.ts) and for framing this page (routes/pages.ts): a
// page on another port of this machine is another site, refused everywhere. Any other value is
// ignored, so a link cannot make the page obey a foreign site.
import { PHOTOPEA_ORIGIN } from '../../shared/protocol/index.js';

/** The loopback names the daemon's CSP may hold (pages.ts leaves out [::1], which Chromium refuses). */
const LOOPBACK_ORIGIN = /^http:\/\/(localhost|127\.0\.0\.1):(\d{1,5})$/;

/** `pagePort`: the port the page was served from (the daemon's). */
export function expectedParentOrigin(search: string, pagePort: number): string {
  const asked = new URLSearchParams(search).get('parentOrigin');
  const match = asked === null ? null : LOOPBACK_ORIGIN.exec(asked);
  if (asked !== null && match !== null && Number(match[2]) === pagePort) return asked;
  return PHOTOPEA_ORIGIN;
}
