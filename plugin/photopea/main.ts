// The Photopea plugin page (dist/plugin/photopea.html, served by the daemon at /photopea): the shared
// panel (plugin/ui) in Photopea's colours, hosted by Photopea through script messaging.
import '../ui/style.css';
import './photopea.css';
import { servedEndpoint } from '../ui/endpoint.js';
import { Panel } from '../ui/panel.js';
import { PhotopeaChannel } from './channel.js';
import { expectedParentOrigin } from './parent-origin.js';
import { createPhotopeaHost } from './photopea-host.js';

// Photopea places results as plain layers: no masked groups.
document.querySelector('#mask-mode option[value="masked"]')?.remove();
const port = Number(location.port) || (location.protocol === 'https:' ? 443 : 80);

/** The page's localStorage, or null where the browser denies it: inside Photopea the page is a
 *  third-party frame, and with third-party storage blocked even reading `localStorage` throws. The
 *  pairing then lasts until the panel closes. */
function pageStorage(): Storage | null {
  try {
    return window.localStorage;
  } catch {
    return null;
  }
}

const channel = new PhotopeaChannel(window.parent, window, expectedParentOrigin(location.search, port));
new Panel(document, createPhotopeaHost(channel, { port, endpoint: servedEndpoint(location.origin), storage: pageStorage(), doc: document, framed: window.parent !== window }));
