// The plugin UI iframe (dist/plugin/ui.html): all networking with the daemon (HTTP + WebSocket),
// pairing and image handling. It talks to the Figma sandbox only through schema-checked postMessage.
import './style.css';
import { Panel } from './panel.js';

new Panel(document, window.parent);
