// The Photopea plugin page (dist/plugin/photopea.html, served by the daemon at /photopea): the shared
// panel (plugin/ui) in Photopea's colours, hosted by Photopea through script messaging.
import '../ui/style.css';
import './photopea.css';
import { Panel } from '../ui/panel.js';
import { PhotopeaChannel } from './channel.js';
import { expectedParentOrigin } from './parent-origin.js';
import { createPhotopeaHost } from './photopea-host.js';

// Photopea places results as plain layers: no masked groups.
document.querySelector('#mask-mode option[value="masked"]')?.remove();
const channel = new PhotopeaChannel(window.parent, window, expectedParentOrigin(location.search));
const port = Number(location.port) || (location.protocol === 'https:' ? 443 : 80);
new Panel(document, createPhotopeaHost(channel, { port, storage: localStorage, doc: document, framed: window.parent !== window }));
