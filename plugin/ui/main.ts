// The plugin UI iframe (dist/plugin/ui.html): all networking with the daemon (HTTP + WebSocket),
// pairing and image handling. It talks to the Figma sandbox only through schema-checked postMessage.
import './style.css';
import { createFigmaHost } from './figma-host.js';
import { Panel } from './panel.js';

new Panel(document, createFigmaHost(window.parent, window));
