import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DerpMapError, isCertPin, mergeDerpMaps, parseDerpMap, withoutCertPins } from './derpmap.ts';
import type { DERPMap } from './types.ts';

/** The shape of Tailscale's published map (controlplane.tailscale.com/derpmap/default), trimmed. */
const TAILSCALE_STYLE = {
  Regions: {
    '1': {
      RegionID: 1,
      RegionCode: 'nyc',
      RegionName: 'New York City',
      Latitude: 40.7128,
      Longitude: -74.006,
      Nodes: [
        {
          Name: '1f',
          RegionID: 1,
          HostName: 'derp1f.tailscale.com',
          IPv4: '199.38.181.104',
          IPv6: '2607:f740:f::bc',
          CanPort80: true,
        },
      ],
    },
    '900': {
      RegionID: 900,
      RegionCode: 'lab',
      RegionName: 'Lab',
      Nodes: [
        {
          Name: '900a',
          RegionID: 900,
          HostName: '127.0.0.1',
          IPv4: '127.0.0.1',
          IPv6: 'none',
          STUNPort: 3478,
          DERPPort: 8443,
          InsecureForTests: true,
        },
      ],
    },
  },
};

function problem(json: unknown, source = 'derp.json'): string {
  try {
    parseDerpMap(json, source);
  } catch (err) {
    assert.ok(err instanceof DerpMapError, String(err));
    return err.message;
  }
  assert.fail('expected a DerpMapError');
}

describe('parseDerpMap', () => {
  test('a Tailscale-style map round-trips unchanged', () => {
    assert.deepEqual(parseDerpMap(TAILSCALE_STYLE, 'tailscale'), TAILSCALE_STYLE);
  });

  test('Headscale-style lowercase keys (from YAML) load, like Go matches them', () => {
    const map = parseDerpMap(
      {
        regions: {
          900: {
            regionid: 900,
            regioncode: 'lab',
            regionname: 'Lab',
            nodes: [{ name: '900a', regionid: 900, hostname: 'derp.example.com', stunport: -1 }],
          },
        },
      },
      'derp.yaml',
    );
    assert.deepEqual(map, {
      Regions: {
        '900': {
          RegionID: 900,
          RegionCode: 'lab',
          RegionName: 'Lab',
          Nodes: [{ Name: '900a', RegionID: 900, HostName: 'derp.example.com', STUNPort: -1 }],
        },
      },
    });
  });

  test('errors name the source and the path', () => {
    const mismatched = {
      Regions: { '900': { RegionID: 901, Nodes: [{ Name: '901a', RegionID: 901, HostName: 'h' }] } },
    };
    assert.equal(
      problem(mismatched, 'derp.yaml'),
      'DERP map derp.yaml: Regions["900"].RegionID: is 901 but the region is listed under "900"',
    );
    const noHost = { Regions: { '900': { RegionID: 900, Nodes: [{ Name: 'a', RegionID: 900 }] } } };
    assert.equal(problem(noHost), 'DERP map derp.json: Regions["900"].Nodes[0].HostName: required');
    const noNodes = { Regions: { '900': { RegionID: 900, Nodes: [] } } };
    assert.equal(
      problem(noNodes),
      'DERP map derp.json: Regions["900"].Nodes: a region needs at least one node',
    );
    assert.equal(problem({}), 'DERP map derp.json: Regions: required');
    assert.equal(problem([]), 'DERP map derp.json: expected an object with "Regions"');
    assert.match(problem({ Regions: { abc: null } }), /Regions\.abc: region keys are decimal region IDs/);
    assert.match(
      problem({ Regions: { '0': { RegionID: 0, Nodes: [] } } }),
      /RegionID: expected a whole number from 1/,
    );
  });

  test('node fields are checked', () => {
    const withNode = (node: Record<string, unknown>) => ({
      Regions: { '7': { RegionID: 7, Nodes: [{ Name: '7a', RegionID: 7, HostName: 'h', ...node }] } },
    });
    assert.match(problem(withNode({ IPv4: '::1' })), /Nodes\[0\]\.IPv4: expected an IPv4 address or "none"/);
    assert.match(problem(withNode({ IPv6: 'nope' })), /Nodes\[0\]\.IPv6: /);
    assert.match(
      problem(withNode({ STUNPort: -2 })),
      /Nodes\[0\]\.STUNPort: expected a whole number from -1 to 65535/,
    );
    assert.match(
      problem(withNode({ RegionID: 8 })),
      /Nodes\[0\]\.RegionID: is 8 but the node is listed in region 7/,
    );
    assert.match(problem(withNode({ Name: '' })), /Nodes\[0\]\.Name: must not be empty/);
  });

  test('a null region survives parsing so that a merge can delete with it', () => {
    assert.deepEqual(parseDerpMap({ Regions: { '1': null } }, 'x'), { Regions: { '1': null } });
  });
});

describe('mergeDerpMaps', () => {
  const base = parseDerpMap(TAILSCALE_STYLE, 'base');

  test('later maps replace regions by id, null deletes, inputs stay untouched', () => {
    const override: DERPMap = {
      Regions: {
        '900': {
          RegionID: 900,
          RegionCode: 'lab2',
          RegionName: 'Lab 2',
          Nodes: [{ Name: '900b', RegionID: 900, HostName: 'derp2.example.com' }],
        },
        '1': null,
      },
    };
    const before = structuredClone(base);
    const merged = mergeDerpMaps([base, override]);
    assert.deepEqual(Object.keys(merged.Regions), ['900']);
    assert.equal(merged.Regions['900']?.RegionCode, 'lab2');
    assert.deepEqual(base, before);
    merged.Regions['900']?.Nodes.push({ Name: 'x', RegionID: 900, HostName: 'x' });
    assert.equal(override.Regions['900']?.Nodes.length, 1);
  });

  test('HomeParams and omitDefaultRegions come from the last map that sets them', () => {
    const merged = mergeDerpMaps([
      { Regions: {}, HomeParams: { RegionScore: { '1': 2 } }, omitDefaultRegions: true },
      base,
    ]);
    assert.deepEqual(merged.HomeParams, { RegionScore: { '1': 2 } });
    assert.equal(merged.omitDefaultRegions, true);
    assert.deepEqual(mergeDerpMaps([]), { Regions: {} });
  });
});

describe('withoutCertPins', () => {
  test('drops sha256-raw CertNames only, leaving every other field and the input alone', () => {
    const map: DERPMap = {
      Regions: {
        '999': {
          RegionID: 999,
          RegionCode: 'weft',
          RegionName: 'weft',
          Nodes: [
            { Name: '999a', RegionID: 999, HostName: '127.0.0.1', CertName: `sha256-raw:${'ab'.repeat(32)}` },
            { Name: '999b', RegionID: 999, HostName: '127.0.0.2', CertName: 'derp.example.com' },
          ],
        },
        '1': null,
      },
    };
    const unpinned = withoutCertPins(map);
    assert.deepEqual(unpinned.Regions['999']?.Nodes, [
      { Name: '999a', RegionID: 999, HostName: '127.0.0.1' },
      { Name: '999b', RegionID: 999, HostName: '127.0.0.2', CertName: 'derp.example.com' },
    ]);
    assert.equal(unpinned.Regions['1'], null);
    assert.ok(isCertPin(map.Regions['999']?.Nodes[0]?.CertName));
  });
});
