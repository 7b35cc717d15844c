// Tests the skein.dev/* annotation parsers: accepted values and errors that name the object, annotation and field.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  AnnotationError,
  durationOf,
  parseDurationMs,
  parseInboundPort,
  parseServiceAnnotations,
} from '../../../control-plane/translate/annotations.ts';

const meta = (annotations: Record<string, string>) => ({ name: 'web', namespace: 'shop', annotations });

describe('annotations', () => {
  it('parses Go-style durations', () => {
    expect(parseDurationMs('250ms')).toBe(250);
    expect(parseDurationMs('1.5s')).toBe(1500);
    expect(parseDurationMs('1m30s')).toBe(90_000);
    expect(parseDurationMs('0s')).toBe(0);
    expect(parseDurationMs('10')).toBeUndefined();
    expect(parseDurationMs('fast')).toBeUndefined();
    expect(durationOf(1250)).toEqual({ seconds: 1, nanos: 250_000_000 });
  });

  it('reads every Service setting', () => {
    const { settings, errors } = parseServiceAnnotations(
      meta({
        'skein.dev/connect-timeout': '250ms',
        'skein.dev/timeout': '15s',
        'skein.dev/lb-policy': 'Ring-Hash',
        'skein.dev/routes': '[{"prefix": "/api", "cluster": "api:8080"}, {"prefix": "/v2", "weighted": [{"service": "v2.other", "port": 80, "weight": 90}, {"service": "v1", "port": 80, "weight": 10}]}]',
      }),
      'Service shop/web',
    );
    expect(errors).toEqual([]);
    expect(settings).toEqual({
      connectTimeoutMs: 250,
      timeoutMs: 15_000,
      lbPolicy: 'ring-hash',
      routes: [
        { prefix: '/api', targets: [{ service: 'api', namespace: 'shop', port: 8080, weight: 1 }] },
        {
          prefix: '/v2',
          targets: [
            { service: 'v2', namespace: 'other', port: 80, weight: 90 },
            { service: 'v1', namespace: 'shop', port: 80, weight: 10 },
          ],
        },
      ],
    });
  });

  it('accepts the README\'s routes example', () => {
    const readme = readFileSync(new URL('../../../README.md', import.meta.url), 'utf8');
    const block = /skein\.dev\/routes: \|\n((?: {8}.*\n)+)/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const text = (block ?? '').split('\n').map((l) => l.slice(8)).join('\n');
    const { settings, errors } = parseServiceAnnotations(meta({ 'skein.dev/routes': text }), 'Service shop/web');
    expect(errors).toEqual([]);
    expect(settings.routes).toEqual([
      { prefix: '/v2/', targets: [{ service: 'hostname-v2', namespace: 'shop', port: 80, weight: 1 }] },
      {
        prefix: '/',
        targets: [
          { service: 'hostname', namespace: 'shop', port: 80, weight: 90 },
          { service: 'hostname-canary', namespace: 'shop', port: 80, weight: 10 },
        ],
      },
    ]);
  });

  it('accepts YAML for routes', () => {
    const { settings, errors } = parseServiceAnnotations(meta({ 'skein.dev/routes': '- prefix: /a\n  cluster: a.x:81\n' }), 'Service shop/web');
    expect(errors).toEqual([]);
    expect(settings.routes).toEqual([{ prefix: '/a', targets: [{ service: 'a', namespace: 'x', port: 81, weight: 1 }] }]);
  });

  it.each([
    ['skein.dev/connect-timeout', 'soon', 'metadata.annotations["skein.dev/connect-timeout"]: "soon" is not a positive duration'],
    ['skein.dev/connect-timeout', '0s', 'is not a positive duration'],
    ['skein.dev/timeout', '5', 'metadata.annotations["skein.dev/timeout"]: "5" is not a duration'],
    ['skein.dev/lb-policy', 'maglev', '"maglev" is not one of round-robin, random, ring-hash, least-request'],
    ['skein.dev/routes', '{prefix: /a}', 'must be a list'],
    ['skein.dev/routes', '[{', 'not valid YAML or JSON'],
    ['skein.dev/routes', '- prefix: api\n  cluster: a:80', '["skein.dev/routes"][0].prefix: "api" must be a path starting with "/"'],
    ['skein.dev/routes', '- prefix: /a', '["skein.dev/routes"][0]: needs exactly one of cluster'],
    ['skein.dev/routes', '- prefix: /a\n  cluster: a', '["skein.dev/routes"][0].cluster: "a" must look like "<svc>[.<ns>]:<port>"'],
    ['skein.dev/routes', '- prefix: /a\n  cluster: a:99999', '[0].cluster'],
    ['skein.dev/routes', '- weighted: []', '[0].weighted: must be a non-empty list'],
    ['skein.dev/routes', '- weighted: [{service: a, port: 80, weight: 0}]', '[0].weighted[0].weight: 0 must be a whole number >= 1'],
    ['skein.dev/routes', '- weighted: [{service: A_B, port: 80}]', '[0].weighted[0].service'],
    ['skein.dev/routes', '- weighted: [{service: a}]', "[0].weighted[0].port: is missing: the target Service's port"],
  ])('reports %s=%j', (annotation, value, expected) => {
    const { settings, errors } = parseServiceAnnotations(meta({ [annotation]: value }), 'Service shop/web');
    expect(settings).toEqual({});
    expect(errors).toHaveLength(1);
    const err = errors[0] as AnnotationError;
    expect(err).toBeInstanceOf(AnnotationError);
    expect(err.code).toBe('SKEIN_TRANSLATE_ANNOTATION');
    expect(err.annotation).toBe(annotation);
    expect(err.message.startsWith('Service shop/web metadata.annotations[')).toBe(true);
    expect(err.message).toContain(expected);
  });

  it('keeps good settings next to a bad one', () => {
    const { settings, errors } = parseServiceAnnotations(
      meta({ 'skein.dev/lb-policy': 'random', 'skein.dev/timeout': 'never' }),
      'Service shop/web',
    );
    expect(settings).toEqual({ lbPolicy: 'random' });
    expect(errors).toHaveLength(1);
  });

  it('keeps the last valid value of a setting whose annotation an edit broke, and says so', () => {
    const good = parseServiceAnnotations(
      meta({
        'skein.dev/lb-policy': 'round-robin',
        'skein.dev/timeout': '5s',
        'skein.dev/mtls-mode': 'PERMISSIVE',
        'skein.dev/routes': '[{"prefix": "/", "weighted": [{"service": "web", "port": 80, "weight": 90}, {"service": "canary", "port": 80, "weight": 10}]}]',
        'skein.dev/allow': 'shop/api, shop/web',
      }),
      'Service shop/web',
    ).settings;
    const broken = meta({
      'skein.dev/lb-policy': 'roundrobin',
      'skein.dev/timeout': '5',
      'skein.dev/mtls-mode': 'permisive',
      'skein.dev/routes': '[{"prefix": "/", "weighted": [{"service": "web", "port": 80, "weight": 90}, {"service": "canary", "port": "x", "weight": 10}]}]',
      'skein.dev/allow': 'shop/api, shop/web!',
      'skein.dev/connect-timeout': '0s',
    });
    const { settings, errors } = parseServiceAnnotations(broken, 'Service shop/web', good);
    // connect-timeout had no valid value before: the default applies; allow fails closed to its valid entries.
    expect(settings).toEqual({ ...good, allow: [good.allow?.[0]] });
    expect(errors.map((e) => e.message)).toEqual([
      'Service shop/web metadata.annotations["skein.dev/connect-timeout"]: "0s" is not a positive duration; use e.g. "250ms" or "2s" (keeping 1s)',
      'Service shop/web metadata.annotations["skein.dev/timeout"]: "5" is not a duration; use e.g. "15s", or "0s" for no timeout (keeping its last valid value, 5000ms)',
      'Service shop/web metadata.annotations["skein.dev/lb-policy"]: "roundrobin" is not one of round-robin, random, ring-hash, least-request (keeping its last valid value, round-robin)',
      'Service shop/web metadata.annotations["skein.dev/routes"][0].weighted[1].port: "x" must be a port number 1-65535 (keeping its last valid routes)',
      'Service shop/web metadata.annotations["skein.dev/mtls-mode"]: "permisive" is not STRICT or PERMISSIVE (keeping its last valid value, PERMISSIVE)',
      'Service shop/web metadata.annotations["skein.dev/allow"]: "shop/web!" is not a caller; list callers as "<namespace>/<service-account>" or "<namespace>/*", comma-separated (allowing only the valid entries)',
    ]);
    // Without a last valid value, each falls back as before.
    expect(parseServiceAnnotations(broken, 'Service shop/web').settings).toEqual({ allow: [good.allow?.[0]] });
  });

  it('reads the inbound port of a pod', () => {
    expect(parseInboundPort({ annotations: { 'skein.dev/inbound-port': '15006' } }, 'Pod a/b')).toBe(15006);
    expect(parseInboundPort({}, 'Pod a/b')).toBeUndefined();
    const err = parseInboundPort({ annotations: { 'skein.dev/inbound-port': '15006x' } }, 'Pod a/b');
    expect(err).toBeInstanceOf(AnnotationError);
    expect((err as AnnotationError).message).toContain('Pod a/b metadata.annotations["skein.dev/inbound-port"]: "15006x" must be a port number');
  });
});
