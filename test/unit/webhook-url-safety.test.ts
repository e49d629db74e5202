// Webhook URL safety without the network: schemes, IP literals in every spelling, credentials, allow-listed hosts,
// and hosts whose DNS answer is checked (a resolver is passed in, so nothing leaves the machine).
import { describe, expect, it } from 'vitest';
import { checkWebhookUrl, forbiddenAddressReason, parseWebhookUrl, UnsafeWebhookUrl, type ResolveAll } from '../../src/webhooks/url-safety.ts';

const strict = { allowHttp: false, allowHosts: [] };
const resolveTo = (...addresses: string[]): ResolveAll => async () => addresses.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));

describe('forbiddenAddressReason', () => {
  it.each([
    '127.0.0.1', '127.1.2.3', '10.0.0.1', '172.16.5.4', '172.31.255.255', '192.168.1.1', '169.254.169.254', '169.254.0.1',
    '100.64.0.1', '0.0.0.0', '224.0.0.1', '255.255.255.255', '198.18.0.1',
    '::1', '::', 'fe80::1', 'fc00::1', 'fd00:ec2::254', 'ff02::1', '::ffff:127.0.0.1', '::ffff:169.254.169.254', '::ffff:a00:1',
  ])('refuses %s', (address) => {
    expect(forbiddenAddressReason(address)).toBeDefined();
  });

  it.each(['93.184.216.34', '8.8.8.8', '172.32.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8'])('accepts the public address %s', (address) => {
    expect(forbiddenAddressReason(address)).toBeUndefined();
  });
});

describe('parseWebhookUrl', () => {
  it.each([
    ['http://example.com/hook', 'only https'],
    ['ftp://example.com/hook', 'only https'],
    ['not a url', 'not a valid absolute URL'],
    ['https://user:secret@example.com/hook', 'credentials'],
    ['https://169.254.169.254/latest/meta-data', 'not a public address'],
    ['https://10.0.0.1/hook', 'not a public address'],
    ['https://2130706433/hook', 'not a public address'], // 127.0.0.1 in decimal
    ['https://0x7f.1/hook', 'not a public address'], // 127.0.0.1 in hex
    ['https://[::ffff:127.0.0.1]/hook', 'not a public address'],
    ['https://[::1]:8443/hook', 'not a public address'],
    // IPv6 forms that embed an IPv4 address a gateway or stack may route to: metadata and loopback through them.
    ['https://[64:ff9b::a9fe:a9fe]/hook', 'not a public address'], // NAT64 → 169.254.169.254
    ['https://[::7f00:1]/hook', 'not a public address'], // IPv4-compatible → 127.0.0.1
    ['https://[2002:a9fe:a9fe::1]/hook', 'not a public address'], // 6to4 → 169.254.169.254
    ['https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook', 'not a public address'], // Teredo
    ['https://[::ffff:0:7f00:1]/hook', 'not a public address'], // IPv4-translated → 127.0.0.1
    ['https://[fec0::1]/hook', 'not a public address'], // site-local
  ])('refuses %s', (url, reason) => {
    expect(() => parseWebhookUrl(url, strict)).toThrow(UnsafeWebhookUrl);
    expect(() => parseWebhookUrl(url, strict)).toThrow(reason);
  });

  it('never repeats credentials of a refused URL', () => {
    expect(() => parseWebhookUrl('https://user:hunter2@example.com/', strict)).toThrow(expect.objectContaining({ message: expect.not.stringContaining('hunter2') }));
  });

  it('accepts http only when allowed, and a loopback host only when allow-listed', () => {
    expect(parseWebhookUrl('http://example.com/hook', { allowHttp: true, allowHosts: [] }).hostname).toBe('example.com');
    expect(() => parseWebhookUrl('http://127.0.0.1:9/hook', { allowHttp: true, allowHosts: [] })).toThrow(UnsafeWebhookUrl);
    expect(parseWebhookUrl('http://127.0.0.1:9/hook', { allowHttp: true, allowHosts: ['127.0.0.1'] }).port).toBe('9');
    expect(parseWebhookUrl('https://[::1]/hook', { allowHttp: false, allowHosts: ['[::1]'] }).hostname).toBe('[::1]');
  });
});

describe('checkWebhookUrl (submission)', () => {
  it('refuses a host that resolves to a private or metadata address, even among public ones', async () => {
    await expect(checkWebhookUrl('https://hooks.example.com/x', strict, resolveTo('10.1.2.3'))).rejects.toThrow('non-public');
    await expect(checkWebhookUrl('https://hooks.example.com/x', strict, resolveTo('93.184.216.34', '169.254.169.254'))).rejects.toThrow('non-public');
    await expect(checkWebhookUrl('https://hooks.example.com/x', strict, async () => Promise.reject(new Error('ENOTFOUND')))).rejects.toThrow('does not resolve');
  });

  it('accepts a host that resolves only to public addresses, and an allow-listed one without asking DNS', async () => {
    await expect(checkWebhookUrl('https://hooks.example.com/x', strict, resolveTo('93.184.216.34', '2606:2800:220:1::1'))).resolves.toBeInstanceOf(URL);
    const neverCalled: ResolveAll = async () => Promise.reject(new Error('DNS must not be asked'));
    await expect(checkWebhookUrl('https://internal.test/x', { allowHttp: false, allowHosts: ['internal.test'] }, neverCalled)).resolves.toBeInstanceOf(URL);
  });
});
