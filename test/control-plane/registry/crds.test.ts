// deploy/crds.yaml agrees with what the registry reads: group, version, plurals, kinds, enums.
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { loadAll } from 'js-yaml';
import { POLICY_GROUP, POLICY_PLURALS, POLICY_VERSION } from '../../../control-plane/registry/kubernetes.ts';
import { HTTP_METHODS } from '../../../control-plane/registry/validate-policy.ts';

interface Crd {
  apiVersion: string;
  kind: string;
  metadata: { name: string };
  spec: {
    group: string;
    scope: string;
    names: { kind: string; plural: string };
    versions: { name: string; served: boolean; storage: boolean; schema: { openAPIV3Schema: { properties: { spec: Schema } } } }[];
  };
}
interface Schema {
  properties?: Record<string, Schema>;
  items?: Schema;
  enum?: string[];
}

describe('deploy/crds.yaml', () => {
  it('defines both policy CRDs as the registry lists them, with structural schemas', async () => {
    const text = await readFile(new URL('../../../deploy/crds.yaml', import.meta.url), 'utf8');
    const crds = loadAll(text) as Crd[];
    expect(crds.map((c) => c.spec.names.kind)).toEqual(['PeerAuthentication', 'AuthorizationPolicy']);
    for (const crd of crds) {
      const kind = crd.spec.names.kind as keyof typeof POLICY_PLURALS;
      expect(crd.apiVersion).toBe('apiextensions.k8s.io/v1');
      expect(crd.kind).toBe('CustomResourceDefinition');
      expect(crd.spec.group).toBe(POLICY_GROUP);
      expect(crd.spec.scope).toBe('Namespaced');
      expect(crd.spec.names.plural).toBe(POLICY_PLURALS[kind]);
      expect(crd.metadata.name).toBe(`${POLICY_PLURALS[kind]}.${POLICY_GROUP}`);
      expect(crd.spec.versions.map((v) => [v.name, v.served, v.storage])).toEqual([[POLICY_VERSION, true, true]]);
    }
    const pa = crds[0]!.spec.versions[0]!.schema.openAPIV3Schema.properties.spec;
    expect(pa.properties?.mtls?.properties?.mode?.enum).toEqual(['STRICT', 'PERMISSIVE']);
    const ap = crds[1]!.spec.versions[0]!.schema.openAPIV3Schema.properties.spec;
    expect(ap.properties?.action?.enum).toEqual(['ALLOW', 'DENY']);
    const operation = ap.properties?.rules?.items?.properties?.to?.items?.properties?.operation;
    expect(operation?.properties?.methods?.items?.enum).toEqual(HTTP_METHODS);
  });
});
