// The plugin UI iframe: all networking with the daemon (HTTP + WebSocket), pairing and image handling.
// It talks to the Figma sandbox only through schema-checked postMessage.
import './style.css';
import { DEFAULT_PORT, HealthResponse, PairResponse, PROTOCOL_VERSION, SandboxMessage, type UiMessage } from '../../shared/protocol/index.js';

const daemonUrl = `http://localhost:${DEFAULT_PORT}`;
let token: string | null = null;

function $(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`missing #${id}`);
  return el;
}

function toSandbox(message: UiMessage): void {
  parent.postMessage({ pluginMessage: message }, '*');
}

function showProblem(text: string, hint: string): void {
  $('problem').hidden = false;
  $('problem-text').textContent = text;
  $('problem-hint').textContent = hint;
}

async function checkHealth(): Promise<void> {
  try {
    const health = HealthResponse.parse(await (await fetch(`${daemonUrl}/v1/health`)).json());
    $('status').textContent = `${health.state} · ${health.device?.provider ?? 'starting'}`;
    $('pair').hidden = token !== null;
  } catch {
    $('status').textContent = 'not running';
    showProblem('The p2pz daemon is not running.', 'Start it with: npm start (in the p2pz folder), or p2pz serve');
  }
}

$('pair-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const code = ($('pair-code') as HTMLInputElement).value.trim();
  void (async () => {
    const response = await fetch(`${daemonUrl}/v1/pair`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ v: PROTOCOL_VERSION, code, client: 'figma' }),
    });
    if (!response.ok) {
      showProblem('That pairing code did not work.', 'Run p2pz pair for a fresh code.');
      return;
    }
    token = PairResponse.parse(await response.json()).token;
    toSandbox({ v: PROTOCOL_VERSION, type: 'save-token', token });
    $('pair').hidden = true;
    toSandbox({ v: PROTOCOL_VERSION, type: 'notify', text: 'Paired with p2pz', error: false });
  })();
});

window.addEventListener('message', (event: MessageEvent) => {
  // Only the Figma host (our parent window) speaks to us.
  if (event.source !== parent) return;
  const data: unknown = (event.data as { pluginMessage?: unknown } | null)?.pluginMessage;
  const parsed = SandboxMessage.safeParse(data);
  if (!parsed.success) return;
  if (parsed.data.type === 'stored-token') {
    token = parsed.data.token;
    void checkHealth();
  }
});
