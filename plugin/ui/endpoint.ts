// The daemon endpoint a designer may choose in the panel: the local daemon (the default,
// http://localhost:<port>) or a studio's team endpoint (docs/TEAM.md). What is accepted is an origin
// only: http(s), a host, an optional port; no path, query, fragment or user name. Plain http only to
// a loopback name, since a token and images cross the network otherwise; a team endpoint must be
// https. Figma additionally lets the plugin reach only the hosts manifest.json's
// networkAccess.allowedDomains names (docs/PLUGIN.md, "Team endpoint").

export type EndpointCheck = { readonly endpoint: string | null } | { readonly problem: string };

/** Host names (URL.hostname form) that reach only this machine. */
export function isLoopbackName(hostname: string): boolean {
  const h = hostname.toLowerCase();
  return h === 'localhost' || h === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** Checks what the designer typed; an empty field means the local daemon (null). */
export function checkEndpoint(text: string): EndpointCheck {
  const typed = text.trim();
  if (typed === '') return { endpoint: null };
  let url: URL;
  try {
    url = new URL(typed);
  } catch {
    return { problem: 'Enter an address such as https://p2pz.studio.example.' };
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return { problem: 'The address must start with https://.' };
  if (url.username !== '' || url.password !== '') return { problem: 'The address must not hold a user name or password.' };
  if ((url.pathname !== '/' && url.pathname !== '') || url.search !== '' || url.hash !== '') {
    return { problem: `Enter the address without a path: ${url.origin}.` };
  }
  if (url.protocol === 'http:' && !isLoopbackName(url.hostname)) {
    return { problem: `A team endpoint needs https: https://${url.host}. Plain http is only for this computer.` };
  }
  return { endpoint: url.origin };
}

/** The endpoint's port (443 or 80 when the URL leaves it out). */
export function endpointPort(endpoint: string): number {
  const url = new URL(endpoint);
  return url.port !== '' ? Number(url.port) : url.protocol === 'https:' ? 443 : 80;
}

/** Whether the endpoint is this machine's daemon (the local advice applies when it does not answer). */
export function isLocalEndpoint(endpoint: string): boolean {
  return isLoopbackName(new URL(endpoint).hostname);
}

/** The endpoint of a page the daemon served (the Photopea page, the standalone page): its own
 *  origin when that is a team endpoint's (https under the public name), else null (the local daemon,
 *  reached as http://localhost:<port> as before). */
export function servedEndpoint(origin: string): string | null {
  return origin.startsWith('http://') && isLocalEndpoint(origin) ? null : origin;
}
