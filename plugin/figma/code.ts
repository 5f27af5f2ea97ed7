// The Figma sandbox entry (dist/plugin/code.js): no DOM, no WebSocket, no fetch abort. It owns the
// document (reading the selected layers, writing result layers) and figma.clientStorage; every daemon
// call and all image decoding happen in the UI iframe. The work is in sandbox.ts, which takes the API
// as a parameter so that tests can run it on a stub.
import { startSandbox } from './sandbox.js';

startSandbox({ api: figma, html: __html__, fetch: (url) => fetch(url) });
