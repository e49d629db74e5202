// Webhook URL safety: https only (unless allowed), and no host that resolves to a loopback, private, link-local,
// metadata or otherwise non-public address unless allow-listed. Checked at submission and again on every connection.
import { lookup as dnsLookup } from 'node:dns';
import { BlockList, isIP, type LookupFunction } from 'node:net';

export interface WebhookUrlPolicy {
  allowHttp: boolean;
  /** Host names or IP addresses exempt from the address check (tests and internal receivers). */
  allowHosts: readonly string[];
}

/** A URL or address refused by the policy; `message` says why, never more than the host. */
export class UnsafeWebhookUrl extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsafeWebhookUrl';
  }
}

/** Every range no public receiver lives in (RFC 6890 special-purpose registries, cloud metadata included). */
const FORBIDDEN = new BlockList();
for (const [network, prefix] of [
  ['0.0.0.0', 8], // "this network"
  ['10.0.0.0', 8], // private
  ['100.64.0.0', 10], // carrier-grade NAT
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local, cloud metadata (169.254.169.254)
  ['172.16.0.0', 12], // private
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay
  ['192.168.0.0', 16], // private
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) {
  FORBIDDEN.addSubnet(network, prefix, 'ipv4');
}
for (const [network, prefix] of [
  ['::', 128], // unspecified
  ['::1', 128], // loopback
  ['::', 96], // IPv4-compatible (deprecated): ::7f00:1 is 127.0.0.1
  ['::ffff:0:0:0', 96], // IPv4-translated (SIIT)
  ['64:ff9b::', 96], // NAT64 well-known prefix: 64:ff9b::a9fe:a9fe reaches 169.254.169.254 through a NAT64 gateway
  ['64:ff9b:1::', 48], // local-use NAT64
  ['2001::', 32], // Teredo (embeds an IPv4 address)
  ['2002::', 16], // 6to4 (embeds an IPv4 address)
  ['fec0::', 10], // site-local (deprecated, still routed by some networks)
  ['100::', 64], // discard
  ['2001:db8::', 32], // documentation
  ['fc00::', 7], // unique local (AWS's fd00:ec2::254 metadata among them)
  ['fe80::', 10], // link-local
  ['ff00::', 8], // multicast
] as const) {
  FORBIDDEN.addSubnet(network, prefix, 'ipv6');
}

/** Why an IP address may not receive webhooks, or undefined when it may (IPv4-mapped IPv6 is checked as IPv4). */
export function forbiddenAddressReason(address: string): string | undefined {
  const family = isIP(address);
  if (family === 0) return 'not an IP address';
  return FORBIDDEN.check(address, family === 4 ? 'ipv4' : 'ipv6') ? `its address ${address} is not a public one` : undefined;
}

function bareHost(hostname: string): string {
  return hostname.replace(/^\[|\]$/g, '').toLowerCase();
}

function isAllowListed(policy: WebhookUrlPolicy, host: string): boolean {
  return policy.allowHosts.some((allowed) => bareHost(allowed) === host);
}

/** Parses and checks what can be checked without DNS: scheme, credentials, an IP literal host. */
export function parseWebhookUrl(raw: string, policy: WebhookUrlPolicy): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UnsafeWebhookUrl('not a valid absolute URL');
  }
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && policy.allowHttp)) {
    throw new UnsafeWebhookUrl(policy.allowHttp ? 'only http and https URLs are accepted' : 'only https URLs are accepted');
  }
  // Credentials in a URL end up in logs and delivery records: refused rather than stored.
  if (url.username !== '' || url.password !== '') throw new UnsafeWebhookUrl('credentials in the URL are not accepted');
  const host = bareHost(url.hostname);
  if (host === '') throw new UnsafeWebhookUrl('the URL has no host');
  if (isIP(host) !== 0 && !isAllowListed(policy, host)) {
    const reason = forbiddenAddressReason(host);
    if (reason !== undefined) throw new UnsafeWebhookUrl(`the host ${host} is not a public address`);
  }
  return url;
}

export type ResolveAll = (hostname: string) => Promise<Array<{ address: string; family: number }>>;

const resolveWithSystem: ResolveAll = (hostname) =>
  new Promise((resolve, reject) => {
    dnsLookup(hostname, { all: true }, (err, addresses) => (err ? reject(err) : resolve(addresses)));
  });

/**
 * The submission check: the URL passes `parseWebhookUrl`, and every address its host resolves to is public (a host
 * with one private address among public ones is refused: the connection could go to either).
 */
export async function checkWebhookUrl(raw: string, policy: WebhookUrlPolicy, resolveAll: ResolveAll = resolveWithSystem): Promise<URL> {
  const url = parseWebhookUrl(raw, policy);
  const host = bareHost(url.hostname);
  if (isIP(host) !== 0 || isAllowListed(policy, host)) return url;
  let addresses: Array<{ address: string }>;
  try {
    addresses = await resolveAll(host);
  } catch {
    throw new UnsafeWebhookUrl(`the host ${host} does not resolve`);
  }
  if (addresses.length === 0) throw new UnsafeWebhookUrl(`the host ${host} does not resolve`);
  for (const { address } of addresses) {
    if (forbiddenAddressReason(address) !== undefined) throw new UnsafeWebhookUrl(`the host ${host} resolves to a non-public address`);
  }
  return url;
}

/**
 * The delivery check, as a socket `lookup`: the addresses a connection is about to use are checked at that moment,
 * so a name that resolved to a public address at submission and to 127.0.0.1 now (DNS rebinding) is refused.
 */
export function createSafeLookup(policy: WebhookUrlPolicy, resolveAll: ResolveAll = resolveWithSystem): LookupFunction {
  return (hostname, options, callback) => {
    const host = bareHost(hostname);
    resolveAll(host).then(
      (found) => {
        const wanted = options.family === 4 || options.family === 6 ? found.filter((a) => a.family === options.family) : found;
        if (wanted.length === 0) {
          callback(Object.assign(new Error(`${host} does not resolve`), { code: 'ENOTFOUND' }), '', 0);
          return;
        }
        if (!isAllowListed(policy, host)) {
          for (const { address } of wanted) {
            if (forbiddenAddressReason(address) !== undefined) {
              callback(new UnsafeWebhookUrl(`the host ${host} resolves to a non-public address`), '', 0);
              return;
            }
          }
        }
        if (options.all === true) {
          (callback as unknown as (err: null, addresses: Array<{ address: string; family: number }>) => void)(null, wanted);
        } else {
          callback(null, wanted[0]!.address, wanted[0]!.family);
        }
      },
      (err: unknown) => callback(err as NodeJS.ErrnoException, '', 0),
    );
  };
}
