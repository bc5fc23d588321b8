/**
 * The address classifier and the URL guard: URLs from a job's configuration (and their
 * redirects) never reach link-local/metadata addresses, and reach loopback/private ones only
 * when allowed. The agent tests use an in-process HTTP server on 127.0.0.1.
 */
import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { request } from 'undici';
import { addressInEntry, classifyAddress } from '../../src/net/addresses.js';
import { checkUrl, guardedAgent, refusal, urlPolicy, urlRefusal, UrlRefusedError } from '../../src/net/url-guard.js';
import { ExitCode } from '../../src/errors.js';

describe('classifyAddress', () => {
  it.each([
    '169.254.169.254', // AWS, GCP, Azure, OpenStack, DigitalOcean instance metadata
    '169.254.170.2', // ECS task metadata
    '169.254.0.1',
    'fe80::1',
    'fe80::1%eth0',
    'fd00:ec2::254', // AWS IMDS over IPv6
    '100.100.100.200', // Alibaba Cloud
    '192.0.0.192', // Oracle Cloud
    '168.63.129.16', // Azure wireserver
    '::ffff:169.254.169.254', // IPv4-mapped IPv6
    '::ffff:a9fe:a9fe',
    '::169.254.169.254', // IPv4-compatible IPv6
    '64:ff9b::a9fe:a9fe', // NAT64
    '2002:a9fe:a9fe::1', // 6to4
    '224.0.0.1',
    '255.255.255.255',
    'ff02::1',
  ])('%s is forbidden', (ip) => {
    expect(classifyAddress(ip).kind).toBe('forbidden');
  });

  it.each([
    '127.0.0.1',
    '127.1.2.3',
    '::1',
    '0.0.0.0',
    '0.1.2.3',
    '::',
    '10.1.2.3',
    '172.16.0.1',
    '172.31.255.255',
    '192.168.1.1',
    '100.64.0.1', // carrier-grade NAT
    '100.127.255.255',
    'fc00::1', // unique local
    'fd12:3456::1',
    '::ffff:127.0.0.1',
    '::ffff:10.0.0.1',
    '64:ff9b::7f00:1',
    '198.18.0.1',
    '240.0.0.1',
    '2001:db8::1',
    'fec0::1',
  ])('%s is private', (ip) => {
    expect(classifyAddress(ip).kind).toBe('private');
  });

  it.each(['8.8.8.8', '1.1.1.1', '93.184.216.34', '172.32.0.1', '100.128.0.1', '11.0.0.1', '2606:4700::1111', '2a00:1450:4001::1', '::ffff:8.8.8.8'])(
    '%s is public',
    (ip) => {
      expect(classifyAddress(ip).kind).toBe('public');
    },
  );

  it('says what a refused address is', () => {
    expect(classifyAddress('169.254.169.254').range).toBe('link-local / cloud metadata');
    expect(classifyAddress('::ffff:127.0.0.1').range).toBe('loopback, embedded in IPv6 ::ffff:7f00:1');
    expect(classifyAddress('fd00:ec2::254').range).toBe('cloud metadata (AWS, IPv6)');
    expect(classifyAddress('not-an-ip').kind).toBe('forbidden');
  });

  it('matches allow-list entries by address or CIDR range, IPv4-mapped addresses as IPv4', () => {
    expect(addressInEntry('10.1.2.3', '10.0.0.0/8')).toBe(true);
    expect(addressInEntry('::ffff:10.1.2.3', '10.0.0.0/8')).toBe(true);
    expect(addressInEntry('11.1.2.3', '10.0.0.0/8')).toBe(false);
    expect(addressInEntry('127.0.0.1', '127.0.0.1')).toBe(true);
    expect(addressInEntry('::1', '127.0.0.1')).toBe(false);
    expect(addressInEntry('fd12::1', 'fd00::/8')).toBe(true);
  });
});

describe('refusal and checkUrl', () => {
  const none = urlPolicy([]);

  it('refuses link-local/metadata addresses even when allow-listed', () => {
    const policy = urlPolicy(['169.254.169.254', '169.254.0.0/16', 'metadata.google.internal']);
    expect(refusal(policy, '169.254.169.254', '169.254.169.254')?.message).toMatch(
      /is a link-local \/ cloud metadata address: URLs from the job's configuration never reach it/,
    );
    expect(refusal(policy, 'metadata.google.internal', '169.254.169.254')?.message).toMatch(
      /^metadata\.google\.internal \(169\.254\.169\.254\) is a link-local/,
    );
  });

  it('refuses private addresses unless the host name, address or range is allowed', () => {
    expect(refusal(none, 'localhost', '127.0.0.1')?.message).toBe('localhost (127.0.0.1) is a loopback address, and localhost is not in ALLOWED_PRIVATE_HOSTS');
    expect(refusal(urlPolicy(['LOCALHOST']), 'localhost', '127.0.0.1')).toBeUndefined();
    expect(refusal(urlPolicy(['127.0.0.1']), 'localhost', '127.0.0.1')).toBeUndefined();
    expect(refusal(urlPolicy(['10.0.0.0/8']), 'models.internal', '10.2.3.4')).toBeUndefined();
    expect(refusal(urlPolicy(['10.0.0.0/8']), 'models.internal', '192.168.0.4')).toBeInstanceOf(UrlRefusedError);
    expect(refusal(urlPolicy(['other.internal']), 'models.internal', '10.2.3.4')).toBeInstanceOf(UrlRefusedError);
    expect(refusal(none, 'example.com', '93.184.216.34')).toBeUndefined();
  });

  it("allows the storage endpoint's host by name, not every name for its address", () => {
    const policy = urlPolicy([], 'http://seaweed.storage.svc:8333');
    expect(refusal(policy, 'seaweed.storage.svc', '10.0.0.7')).toBeUndefined();
    expect(refusal(policy, 'other.svc', '10.0.0.7')).toBeInstanceOf(UrlRefusedError);
    const local = urlPolicy([], 'http://127.0.0.1:8333');
    expect(refusal(local, '127.0.0.1', '127.0.0.1')).toBeUndefined();
    expect(refusal(local, 'localhost', '127.0.0.1')).toBeInstanceOf(UrlRefusedError);
    expect(refusal(urlPolicy([], 'http://[::1]:8333'), '[::1]', '::1')).toBeUndefined();
  });

  it('accepts only http(s), without credentials, and judges IP literals at once, however they are spelled', () => {
    const refused = (url: string, policy = none) => {
      try {
        checkUrl(policy, url, 'PRETRAINED_WEIGHT_URL');
        return undefined;
      } catch (err) {
        expect(err).toBeInstanceOf(UrlRefusedError);
        expect((err as UrlRefusedError).exitCode).toBe(ExitCode.config);
        return (err as Error).message;
      }
    };
    for (const url of ['file:///etc/passwd', 'ftp://example.com/w.pt', 'gopher://example.com/', 'data:text/plain,x', 'javascript:alert(1)']) {
      expect(refused(url)).toMatch(/only http:\/\/ and https:\/\/ URLs are followed/);
    }
    expect(refused('not a url')).toMatch(/is not a valid URL/);
    expect(refused('https://user:pass@example.com/w.pt')).toMatch(/carries credentials/);
    for (const url of ['http://169.254.169.254/latest/meta-data/', 'http://[fd00:ec2::254]/', 'http://[::ffff:169.254.169.254]/', 'http://[fe80::1]/']) {
      expect(refused(url, urlPolicy(['169.254.0.0/16', 'fe80::/10']))).toMatch(/metadata|link-local/);
    }
    // The URL parser normalises decimal, hex and octal IPv4 spellings before we judge them.
    for (const url of [
      'http://127.0.0.1/',
      'http://2130706433/',
      'http://0x7f.1/',
      'http://0177.0.0.1/',
      'http://[::1]/',
      'http://0.0.0.0/',
      'http://10.0.0.1:8080/x',
      'http://[::ffff:7f00:1]/',
    ]) {
      expect(refused(url), url).toMatch(/address, and .* is not in ALLOWED_PRIVATE_HOSTS/);
    }
    expect(refused('http://127.0.0.1/', urlPolicy(['127.0.0.1']))).toBeUndefined();
    expect(refused('https://example.com/weights.pt?X-Amz-Signature=abc')).toBeUndefined();
  });

  it('never shows the query string (where a presigned URL keeps its signature)', () => {
    expect(() => checkUrl(none, 'http://10.0.0.1/w.pt?X-Amz-Signature=topsecretsig', 'PRETRAINED_WEIGHT_URL')).toThrow(/^(?!.*topsecretsig)/s);
  });
});

describe('guardedAgent: the address actually connected to', () => {
  let server: Server;
  let port: number;
  let hits = 0;
  beforeAll(async () => {
    server = createServer((_req, res) => {
      hits += 1;
      res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });
  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });

  async function get(url: string, agent: ReturnType<typeof guardedAgent>) {
    try {
      const response = await request(url, { dispatcher: agent });
      return { status: response.statusCode, body: await response.body.text() };
    } catch (err) {
      return { refused: urlRefusal(err), err };
    } finally {
      await agent.close();
    }
  }

  it('refuses a name that resolves to loopback unless allowed', async () => {
    const before = hits;
    const refused = await get(`http://localhost:${port}/`, guardedAgent(urlPolicy([])));
    expect(refused.refused?.message).toMatch(/^localhost \((127\.0\.0\.1|::1)\) is a loopback address/);
    expect(hits).toBe(before);
    expect(await get(`http://localhost:${port}/`, guardedAgent(urlPolicy(['localhost'])))).toEqual({ status: 200, body: 'ok' });
  });

  it('refuses an IP literal at connect time as well', async () => {
    const refused = await get(`http://127.0.0.1:${port}/`, guardedAgent(urlPolicy([])));
    expect(refused.refused).toBeInstanceOf(UrlRefusedError);
    expect(await get(`http://127.0.0.1:${port}/`, guardedAgent(urlPolicy(['127.0.0.1'])))).toEqual({ status: 200, body: 'ok' });
  });

  it('judges the connected socket even when name resolution lies (DNS rebinding)', async () => {
    const before = hits;
    // A resolver that answers a public-looking name with loopback, unchecked: the guard still
    // sees the socket's peer address before anything is sent.
    const rebinding = (
      _host: string,
      options: object,
      callback: (err: null, address: string | Array<{ address: string; family: number }>, family?: number) => void,
    ) => ((options as { all?: boolean }).all ? callback(null, [{ address: '127.0.0.1', family: 4 }]) : callback(null, '127.0.0.1', 4));
    const refused = await get(`http://weights.example.com:${port}/`, guardedAgent(urlPolicy([]), { unguardedLookup: rebinding }));
    expect(refused.refused?.message).toBe('weights.example.com (127.0.0.1) is a loopback address, and weights.example.com is not in ALLOWED_PRIVATE_HOSTS');
    expect(hits).toBe(before);
  });
});
