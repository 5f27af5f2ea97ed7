// The Figma sandbox: no DOM, no WebSocket, no fetch abort. It owns the document (reading the selected
// layer, writing result layers) and figma.clientStorage; every network call and all image decoding
// happen in the UI iframe.
import { UiMessage, type SandboxMessage } from '../../shared/protocol/plugin.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/version.js';

const TOKEN_KEY = 'p2pz.token';

function post(message: SandboxMessage): void {
  figma.ui.postMessage(message);
}

figma.showUI(__html__, { width: 320, height: 420, themeColors: true, title: 'p2pz' });

figma.ui.onmessage = async (raw: unknown) => {
  const parsed = UiMessage.safeParse(raw);
  if (!parsed.success) return; // not ours: the UI only sends schema-valid messages
  const message = parsed.data;
  switch (message.type) {
    case 'save-token':
      await figma.clientStorage.setAsync(TOKEN_KEY, message.token);
      return;
    case 'notify':
      figma.notify(message.text, { error: message.error });
      return;
  }
};

void figma.clientStorage.getAsync(TOKEN_KEY).then((token: unknown) => {
  post({ v: PROTOCOL_VERSION, type: 'stored-token', token: typeof token === 'string' ? token : null });
});
