import { describe, expect, it } from 'vitest';
import { ApiException } from '../api/errors';
import { FakeTransport, address } from '../testing/fake-transport';
import { ChainManager, LOCAL_CHAIN_FORM, chainForm, chainFormProblem, chainSettingsOf } from './chain.svelte';

function setup() {
  const api = new FakeTransport();
  const chain = new ChainManager();
  chain.connect(api);
  return { api, chain };
}

const REMOTE = { rpcUrl: 'https://rpc.example/ ', chainId: '84532', registry: address(0xa1), splitter: address(0xa2) };

describe('ChainManager', () => {
  it('turns the form into settings and back; an empty RPC URL is the local chain', () => {
    expect(chainSettingsOf(LOCAL_CHAIN_FORM)).toEqual({ rpc_url: '', chain_id: null, registry: null, splitter: null });
    expect(chainSettingsOf({ ...REMOTE, chainId: '5' })).toEqual({ rpc_url: 'https://rpc.example/', chain_id: 5, registry: address(0xa1), splitter: address(0xa2) });
    expect(chainForm({ rpc_url: 'http://x', chain_id: 7, registry: null, splitter: '0x2' })).toEqual({ rpcUrl: 'http://x', chainId: '7', registry: '', splitter: '0x2' });
    expect(chainFormProblem(LOCAL_CHAIN_FORM)).toBeNull();
    expect(chainFormProblem(REMOTE)).toBeNull();
    expect(chainFormProblem({ ...REMOTE, rpcUrl: 'rpc.example' })).toMatch(/http/);
    expect(chainFormProblem({ ...REMOTE, chainId: '' })).toMatch(/chain id/);
    expect(chainFormProblem({ ...REMOTE, splitter: '0x12' })).toMatch(/splitter/);
  });

  it('loads the status and settings, and starts the local chain', async () => {
    const { api, chain } = setup();
    await chain.load();
    expect(chain.settings?.rpc_url).toBe('');
    expect(chain.status?.reachable).toBe(false);
    expect(await chain.up()).toBe(true);
    expect(api.callsOf('chainUp')).toHaveLength(1);
    expect(chain.status).toMatchObject({ local: true, reachable: true, chain_id: 31337 });
  });

  it('saves a remote chain, and refuses a form it can tell is wrong without asking', async () => {
    const { api, chain } = setup();
    expect(await chain.save({ ...REMOTE, chainId: 'five' })).toBe(false);
    expect(chain.actionError?.error).toMatch(/chain id/);
    expect(api.callsOf('putChainSettings')).toEqual([]);
    expect(await chain.save(REMOTE)).toBe(true);
    expect(api.callsOf('putChainSettings')).toEqual([[{ rpc_url: 'https://rpc.example/', chain_id: 84532, registry: address(0xa1), splitter: address(0xa2) }]]);
    expect(chain.status?.local).toBe(false);
    expect(chain.actionError).toBeNull();
  });

  it('keeps the studio’s refusal of a chain that does not match', async () => {
    const { api, chain } = setup();
    api.failures.putChainSettings = new ApiException('the node at https://rpc.example is chain 1, not 84532', null, 400);
    expect(await chain.save(REMOTE)).toBe(false);
    expect(chain.actionError?.error).toMatch(/not 84532/);
    expect(chain.busy).toBeNull();
  });
});
